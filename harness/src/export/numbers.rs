//! Numbers for people: significant figures, and a unit chosen so the figure reads at a glance
//! (mJ and µJ, mg and µg, m for small distances). Pure functions.

use crate::units::sig;

fn scaled(v: f64, units: &[(f64, &str)]) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let (scale, unit) = units
        .iter()
        .copied()
        .find(|(scale, _)| v.abs() >= *scale)
        .unwrap_or(units[units.len() - 1]);
    format!("{} {unit}", sig(v / scale, 3))
}

/// `v` (in a scale's base unit) written in the unit `scale` picks, three significant figures;
/// `-` when it is not finite.
fn in_unit(v: f64, scale: impl Fn(&[f64]) -> crate::units::Scale) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = scale(&[v]);
    format!("{} {}", sig(s.of(v), 3), s.unit)
}

/// A time in ms in the unit that fits it ([`crate::units::time_ms`], the rule charts' axes use),
/// three significant figures: `512 ns`, `512 µs`, `1.23 ms`.
pub fn time(ms: f64) -> String {
    in_unit(ms, crate::units::time_ms)
}

/// Energy in J with a unit that fits ([`crate::units::energy_j`], the rule charts' axes use):
/// `1.77 mJ`, `26.0 µJ`, `3.41 J`.
pub fn energy(joules: f64) -> String {
    if joules == 0.0 {
        return "0 J".into();
    }
    in_unit(joules, crate::units::energy_j)
}

/// A mass of CO2e in g with a unit that fits: `48.2 kg`, `3.10 g`, `85.0 µg`.
pub fn co2e(grams: f64) -> String {
    if grams == 0.0 {
        return "0 g".into();
    }
    scaled(
        grams,
        &[
            (1e6, "t"),
            (1e3, "kg"),
            (1.0, "g"),
            (1e-3, "mg"),
            (1e-6, "µg"),
            (1e-9, "ng"),
        ],
    )
}

/// A distance in km, in m below one kilometre: `48 m`, `3.20 km`.
pub fn distance(km: f64) -> String {
    if !km.is_finite() {
        return "-".into();
    }
    if km.abs() >= 1.0 {
        format!("{} km", sig(km, 3))
    } else {
        format!("{} m", sig(km * 1e3, 3))
    }
}

/// Energy in kWh with a unit that fits (kWh, Wh).
pub fn kwh(kwh: f64) -> String {
    if !kwh.is_finite() {
        return "-".into();
    }
    if kwh.abs() >= 1.0 || kwh == 0.0 {
        format!("{} kWh", sig(kwh, 3))
    } else {
        format!("{} Wh", sig(kwh * 1e3, 3))
    }
}

/// `fmt` of the value, or `-` without one.
pub fn opt(v: Option<f64>, fmt: impl Fn(f64) -> String) -> String {
    v.map(fmt).unwrap_or_else(|| "-".into())
}

/// A figure with the estimate's band, `x [lo-hi]`, where the record's energy has one.
pub fn with_band(central: f64, factors: Option<(f64, f64)>, fmt: impl Fn(f64) -> String) -> String {
    banded(
        central,
        factors.map(|(lo, hi)| (central * lo, central * hi)),
        fmt,
    )
}

/// A figure and its band, `x [lo-hi]`, or the figure alone without one.
pub fn banded(central: f64, band: Option<(f64, f64)>, fmt: impl Fn(f64) -> String) -> String {
    match band {
        Some((lo, hi)) => format!("{} [{}-{}]", fmt(central), fmt(lo), fmt(hi)),
        None => fmt(central),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_keep_three_significant_digits_and_a_readable_unit() {
        assert_eq!(sig(0.000_177_2, 3), "0.000177");
        assert_eq!(sig(12.345, 3), "12.3");
        assert_eq!(sig(41_837.0, 3), "41800");
        assert_eq!(energy(1.772e-4), "177 µJ");
        assert_eq!(energy(0.0034), "3.40 mJ");
        assert_eq!(co2e(8.5e-5), "85.0 µg");
        assert_eq!(co2e(48_200.0), "48.2 kg");
        assert_eq!(distance(0.048), "48.0 m");
        assert_eq!(distance(3.2), "3.20 km");
        assert_eq!(kwh(0.25), "250 Wh");
        assert_eq!(sig(1e308, 3), "1.00e308");
        assert_eq!(sig(-2.5e-300, 2), "-2.5e-300");
    }

    proptest::proptest! {
        /// Any number, however extreme, gives a short text without NaN or inf.
        #[test]
        fn every_formatter_gives_a_short_sane_text_for_any_number(
            bits in proptest::prelude::any::<u64>(),
            n in 1usize..6,
        ) {
            let v = f64::from_bits(bits);
            for text in [sig(v, n), energy(v), time(v), co2e(v), distance(v), kwh(v)] {
                proptest::prop_assert!(text.len() <= 32, "{v:e}: {text}");
                proptest::prop_assert!(!text.contains("NaN") && !text.contains("inf"), "{v:e}: {text}");
            }
        }
    }
}
