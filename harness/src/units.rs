//! Units scaled to the values they show: one rule for a chart's axis and a table's column, so the
//! two say the same unit (ns/µs/ms/s for times, nJ/µJ/mJ/J/kJ for energy, B/KiB/MiB/GiB for
//! sizes).

/// A unit and what a value in the base unit is multiplied by to be written in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// The unit's symbol (`µs`).
    pub unit: &'static str,
    /// Base-unit value times this is the value in `unit`.
    pub factor: f64,
}

impl Scale {
    /// `value` (in the base unit) in this unit.
    pub fn of(self, value: f64) -> f64 {
        value * self.factor
    }
}

/// Times, their base unit the millisecond.
const TIME_MS: [Scale; 4] = [
    Scale {
        unit: "ns",
        factor: 1e6,
    },
    Scale {
        unit: "µs",
        factor: 1e3,
    },
    Scale {
        unit: "ms",
        factor: 1.0,
    },
    Scale {
        unit: "s",
        factor: 1e-3,
    },
];

/// Energies, their base unit the joule.
const ENERGY_J: [Scale; 5] = [
    Scale {
        unit: "nJ",
        factor: 1e9,
    },
    Scale {
        unit: "µJ",
        factor: 1e6,
    },
    Scale {
        unit: "mJ",
        factor: 1e3,
    },
    Scale {
        unit: "J",
        factor: 1.0,
    },
    Scale {
        unit: "kJ",
        factor: 1e-3,
    },
];

/// Sizes, their base unit the byte (binary prefixes).
const BYTES: [Scale; 4] = [
    Scale {
        unit: "B",
        factor: 1.0,
    },
    Scale {
        unit: "KiB",
        factor: 1.0 / 1024.0,
    },
    Scale {
        unit: "MiB",
        factor: 1.0 / 1048576.0,
    },
    Scale {
        unit: "GiB",
        factor: 1.0 / 1073741824.0,
    },
];

/// The largest unit of `scales` (smallest first) in which the largest finite magnitude of
/// `values` is at least 1; the smallest unit when every value is below it, and the base unit
/// (factor 1) when there is no finite value.
fn pick(scales: &[Scale], values: &[f64]) -> Scale {
    let top = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| v.abs())
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let Some(top) = top else {
        return scales
            .iter()
            .copied()
            .find(|s| s.factor == 1.0)
            .unwrap_or(scales[0]);
    };
    scales
        .iter()
        .rev()
        .copied()
        .find(|s| top * s.factor >= 1.0)
        .unwrap_or(scales[0])
}

/// The time unit for `values_ms` (milliseconds): 0.0005 ms reads as 500 ns.
pub fn time_ms(values_ms: &[f64]) -> Scale {
    pick(&TIME_MS, values_ms)
}

/// The energy unit for `values_j` (joules): 0.000026 J reads as 26 µJ.
pub fn energy_j(values_j: &[f64]) -> Scale {
    pick(&ENERGY_J, values_j)
}

/// The size unit for `values_bytes`.
pub fn bytes(values_bytes: &[f64]) -> Scale {
    pick(&BYTES, values_bytes)
}

/// `v` with `n` significant figures, in plain decimal notation (`0.000177`, `12.3`, `41800`);
/// in exponent form (`1.00e308`) beyond 10^15 or below 10^-12.
pub fn sig(v: f64, n: usize) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-12..=15).contains(&magnitude) {
        // Far outside what any measured figure reads: exponent form, never hundreds of digits.
        return format!("{v:.prec$e}", prec = n.saturating_sub(1));
    }
    let decimals = (n as i32 - 1 - magnitude).clamp(0, 15) as usize;
    let factor = 10f64.powi(n as i32 - 1 - magnitude);
    let rounded = (v * factor).round() / factor;
    format!("{rounded:.decimals$}")
}

/// `v` with three significant figures, plain decimals (for a value written on a chart).
pub fn short(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_is_the_largest_in_which_the_largest_value_is_at_least_one() {
        // 0.0005 ms is 500 ns; 0.005 ms is 5 µs.
        assert_eq!(time_ms(&[0.0005, 0.0004]).unit, "ns");
        assert_eq!(time_ms(&[0.005, 0.004]).unit, "µs");
        assert!((time_ms(&[0.005, 0.004]).of(0.005) - 5.0).abs() < 1e-12);
        assert_eq!(time_ms(&[0.00005]).unit, "ns");
        assert_eq!(time_ms(&[12.0, 0.2]).unit, "ms");
        assert_eq!(time_ms(&[1500.0]).unit, "s");
        assert_eq!(energy_j(&[2.6e-5, 1.0e-5]).unit, "µJ");
        assert_eq!(energy_j(&[0.0017]).unit, "mJ");
        assert_eq!(energy_j(&[3.4]).unit, "J");
        assert_eq!(energy_j(&[3.0e-12]).unit, "nJ");
        assert_eq!(bytes(&[3.0 * 1048576.0]).unit, "MiB");
        assert_eq!(bytes(&[512.0]).unit, "B");
    }

    #[test]
    fn no_finite_value_gives_the_base_unit() {
        assert_eq!(time_ms(&[]).unit, "ms");
        assert_eq!(energy_j(&[f64::NAN, f64::INFINITY]).unit, "J");
        assert_eq!(time_ms(&[0.0]).unit, "ns");
    }

    #[test]
    fn short_keeps_three_significant_figures() {
        assert_eq!(short(1234.4), "1234");
        assert_eq!(short(12.345), "12.3");
        assert_eq!(short(0.0012345), "0.00123");
    }
}
