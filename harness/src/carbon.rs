//! Carbon: CO2e = energy (kWh) x PUE x grid intensity (g/kWh). The intensity comes from a country
//! (ISO3 code or name, `data/carbon_intensity_countries.csv`, OWID/Ember via CodeCarbon), a Google
//! Cloud region (`gcp:<region>`, `data/carbon_intensity_cloud_regions.csv`), or a number the user
//! gives; with none, the world average of 480 g/kWh (Ember, 2023). Every figure says which.

use serde::{Deserialize, Serialize};

use crate::error::UsageError;

/// World average grid intensity, g CO2e per kWh (Ember, Global Electricity Review 2024, for 2023).
pub const WORLD_AVERAGE_G_PER_KWH: f64 = 480.0;

/// Power usage effectiveness when none is given: no facility overhead.
pub const DEFAULT_PUE: f64 = 1.0;
/// Countries: `iso3,country,year,g_co2e_per_kwh`.
pub const COUNTRIES_CSV: &str = include_str!("../data/carbon_intensity_countries.csv");
/// Google Cloud regions: `provider,region,iso3,city,g_co2e_per_kwh`.
pub const CLOUD_REGIONS_CSV: &str = include_str!("../data/carbon_intensity_cloud_regions.csv");
/// Grams of CO2 per km of a typical passenger car: 400 g per mile (US EPA, "Greenhouse Gas
/// Emissions from a Typical Passenger Vehicle").
pub const CAR_G_PER_KM: f64 = 400.0 / 1.609_344;
/// Where [`CAR_G_PER_KM`] comes from.
pub const CAR_FACTOR_SOURCE: &str =
    "US EPA, Greenhouse Gas Emissions from a Typical Passenger Vehicle: 400 g CO2 per mile (249 g/km)";

/// Embodied emissions of a rack server before its memory: a mono-socket server with 16 GB and no
/// local storage (Cloud Carbon Footprint's `BASE_MANUFACTURING_EMISSIONS`, after Teads' AWS EC2
/// dataset and Dell's PowerEdge R740 life-cycle assessment), kg CO2e.
pub const SERVER_BASE_EMBODIED_KG: f64 = 1000.0;
/// Memory included in [`SERVER_BASE_EMBODIED_KG`], GB.
pub const SERVER_BASE_MEMORY_GB: f64 = 16.0;
/// Embodied emissions per GB of memory beyond that: 533 kg CO2e for the R740's 384 GB.
pub const EMBODIED_KG_PER_MEMORY_GB: f64 = 533.0 / 384.0;
/// A rack server's expected life, years (CCF and Teads, after the R740 assessment).
pub const SERVER_LIFETIME_YEARS: f64 = 4.0;

/// The embodied emissions (the SCI's M) of the host and where the figure comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Embodied {
    /// Total embodied emissions of the host, kg CO2e.
    pub kg: f64,
    /// Its expected life, years.
    pub lifetime_years: f64,
    /// Where both come from, in words.
    pub source: String,
}

impl Embodied {
    /// The host's figure: `kg` and `years` where given (`--embodied-kg`, `--lifetime-years`),
    /// else Cloud Carbon Footprint's server model for a host of `memory_bytes`, over 4 years.
    pub fn for_host(
        memory_bytes: u64,
        virtual_machine: bool,
        kg: Option<f64>,
        years: Option<f64>,
    ) -> Self {
        let memory_gb = memory_bytes as f64 / 1e9;
        let modelled = SERVER_BASE_EMBODIED_KG
            + (memory_gb - SERVER_BASE_MEMORY_GB).max(0.0) * EMBODIED_KG_PER_MEMORY_GB;
        let kg_source = match kg {
            Some(_) => "--embodied-kg (given)".to_string(),
            None => format!(
                "Cloud Carbon Footprint's server model: {SERVER_BASE_EMBODIED_KG} kg CO2e for a mono-socket server with {SERVER_BASE_MEMORY_GB} GB, plus {:.3} kg per GB beyond (Teads' AWS EC2 dataset, Dell PowerEdge R740 LCA), for this host's {memory_gb:.1} GB{}",
                EMBODIED_KG_PER_MEMORY_GB,
                if virtual_machine {
                    "; this is a VIRTUAL MACHINE, charged as if it were a whole server of its memory: an upper bound, since its host is larger and shared (give --embodied-kg with the provider's per-instance figure)"
                } else {
                    ""
                }
            ),
        };
        let year_source = match years {
            Some(_) => "--lifetime-years (given)".to_string(),
            None => format!("{SERVER_LIFETIME_YEARS} years (CCF and Teads, after the R740 LCA)"),
        };
        Self {
            kg: kg.unwrap_or(modelled),
            lifetime_years: years.unwrap_or(SERVER_LIFETIME_YEARS),
            source: format!("{kg_source}; life {year_source}"),
        }
    }

    /// The SCI's M for `seconds` of the host's time with `share` (0..1) of it reserved:
    /// TE x (TiR / EL) x (RR / ToR), in g CO2e.
    pub fn grams(&self, seconds: f64, share: f64) -> f64 {
        let life_s = self.lifetime_years * 365.25 * 86_400.0;
        self.kg * 1e3 * (seconds / life_s) * share.clamp(0.0, 1.0)
    }
}

/// The grid intensity and PUE a run uses, and where they come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonSettings {
    /// g CO2e per kWh.
    pub intensity_g_per_kwh: f64,
    /// Where the intensity comes from, in words.
    pub source: String,
    /// The year of the figure, where known.
    pub year: Option<u32>,
    /// The region asked for (`POL`, `Poland`, `gcp:europe-west1`), if any.
    pub region: Option<String>,
    /// ISO3 code of the country, where known.
    pub country_iso3: Option<String>,
    /// Country name, where known.
    pub country_name: Option<String>,
    /// Power usage effectiveness of the facility (1.0: no overhead).
    pub pue: f64,
}

/// CO2e of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonRecord {
    /// g CO2e per item.
    pub co2e_per_item_g: f64,
    /// g CO2e per million items.
    pub co2e_per_million_items_g: f64,
    /// The intensity used, g/kWh.
    pub intensity_g_per_kwh: f64,
    /// Its source.
    pub intensity_source: String,
    /// Its year.
    pub intensity_year: Option<u32>,
    /// The PUE applied.
    pub pue: f64,
    /// Whether the energy behind it was measured or estimated (its label).
    pub energy_source: String,
}

/// g CO2e of `energy_j` joules at `intensity` g/kWh and `pue`.
pub fn co2e_g(energy_j: f64, intensity_g_per_kwh: f64, pue: f64) -> f64 {
    energy_j / 3.6e6 * pue * intensity_g_per_kwh
}

impl CarbonSettings {
    /// The carbon of a cell that used `energy_per_item_j` per item, from a source labelled `label`.
    pub fn record(&self, energy_per_item_j: f64, label: &str) -> CarbonRecord {
        let per_item = co2e_g(energy_per_item_j, self.intensity_g_per_kwh, self.pue);
        CarbonRecord {
            co2e_per_item_g: per_item,
            co2e_per_million_items_g: per_item * 1e6,
            intensity_g_per_kwh: self.intensity_g_per_kwh,
            intensity_source: self.source.clone(),
            intensity_year: self.year,
            pue: self.pue,
            energy_source: label.to_string(),
        }
    }
}

struct Row {
    key: String,
    iso3: String,
    name: String,
    year: Option<u32>,
    g: f64,
}

fn countries() -> Vec<Row> {
    let mut r = csv::Reader::from_reader(COUNTRIES_CSV.as_bytes());
    r.records()
        .flatten()
        .filter_map(|rec| {
            Some(Row {
                key: rec.get(0)?.to_string(),
                iso3: rec.get(0)?.to_string(),
                name: rec.get(1)?.to_string(),
                year: rec.get(2)?.parse().ok(),
                g: rec.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn cloud_regions() -> Vec<Row> {
    let mut r = csv::Reader::from_reader(CLOUD_REGIONS_CSV.as_bytes());
    r.records()
        .flatten()
        .filter_map(|rec| {
            Some(Row {
                key: format!("{}:{}", rec.get(0)?, rec.get(1)?),
                iso3: rec.get(2)?.to_string(),
                name: format!("{} ({})", rec.get(3)?, rec.get(1)?),
                year: None,
                g: rec.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

fn closest(wanted: &str, candidates: Vec<String>) -> Vec<String> {
    let w = wanted.to_lowercase();
    let mut scored: Vec<(f64, String)> = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&w, &c.to_lowercase()), c))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(5).map(|(_, c)| c).collect()
}

/// Resolves `--region`, `--carbon-intensity` and `--pue` into settings.
pub fn resolve(
    region: Option<&str>,
    intensity: Option<f64>,
    pue: Option<f64>,
) -> Result<CarbonSettings, UsageError> {
    let pue = crate::limits::PUE.check(pue.unwrap_or(DEFAULT_PUE))?;
    let mut settings = CarbonSettings {
        intensity_g_per_kwh: WORLD_AVERAGE_G_PER_KWH,
        source: "world average 2023 (Ember, Global Electricity Review 2024); no region given"
            .into(),
        year: Some(2023),
        region: region.map(str::to_string),
        country_iso3: None,
        country_name: None,
        pue,
    };
    if let Some(region) = region {
        let row = if region.contains(':') {
            let rows = cloud_regions();
            let found = rows.iter().position(|r| r.key.eq_ignore_ascii_case(region));
            match found {
                Some(i) => rows.into_iter().nth(i),
                None => {
                    return Err(UsageError(format!(
                        "--region {region:?}: unknown cloud region; closest: {}",
                        closest(region, rows.into_iter().map(|r| r.key).collect()).join(", ")
                    )))
                }
            }
        } else {
            let rows = countries();
            let found = rows.iter().position(|r| {
                r.key.eq_ignore_ascii_case(region) || r.name.eq_ignore_ascii_case(region)
            });
            match found {
                Some(i) => rows.into_iter().nth(i),
                None => {
                    let names = rows.into_iter().flat_map(|r| [r.iso3, r.name]).collect();
                    return Err(UsageError(format!(
                        "--region {region:?}: unknown country or region; closest: {} (cloud regions: gcp:<region>)",
                        closest(region, names).join(", ")
                    )));
                }
            }
        };
        if let Some(row) = row {
            settings.intensity_g_per_kwh = row.g;
            settings.year = row.year;
            settings.country_iso3 = Some(row.iso3.clone());
            settings.source = if region.contains(':') {
                format!(
                    "{}: Google Cloud region data (via CodeCarbon 3.3.2)",
                    row.key
                )
            } else {
                format!(
                    "{} ({}): OWID/Ember{} (via CodeCarbon 3.3.2)",
                    row.name,
                    row.iso3,
                    row.year.map(|y| format!(" {y}")).unwrap_or_default()
                )
            };
            settings.country_name = Some(row.name);
        }
    }
    if let Some(g) = intensity {
        let g = crate::limits::CARBON_INTENSITY.check(g)?;
        settings.intensity_g_per_kwh = g;
        settings.year = None;
        settings.source = "given by the user (--carbon-intensity)".into();
    }
    Ok(settings)
}

#[cfg(test)]
mod embodied_tests {
    use super::*;

    /// Hand-computed: 24 GB is 8 GB beyond 16: 1000 + 8 x 533/384 = 1011.10 kg; one hour of half
    /// the host over 4 years: 1011.10e3 g x 3600 / 126,230,400 s x 0.5 = 14.418 g.
    #[test]
    fn the_embodied_share_follows_the_sci_formula() {
        let e = Embodied::for_host(24_000_000_000, false, None, None);
        assert!((e.kg - 1011.104).abs() < 1e-3, "{}", e.kg);
        assert!((e.grams(3600.0, 0.5) - 14.418).abs() < 1e-3);
        let given = Embodied::for_host(24_000_000_000, true, Some(300.0), Some(6.0));
        assert_eq!((given.kg, given.lifetime_years), (300.0, 6.0));
        assert!(given.source.contains("--embodied-kg"));
        assert!(Embodied::for_host(8_000_000_000, true, None, None)
            .source
            .contains("VIRTUAL MACHINE"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_kwh_in_poland_is_661_9_g_and_pue_multiplies() {
        let pl = resolve(Some("POL"), None, None).unwrap();
        assert_eq!(pl.intensity_g_per_kwh, 661.9);
        assert!((co2e_g(3.6e6, pl.intensity_g_per_kwh, pl.pue) - 661.9).abs() < 1e-9);
        let pl15 = resolve(Some("Poland"), None, Some(1.5)).unwrap();
        assert!((co2e_g(3.6e6, pl15.intensity_g_per_kwh, pl15.pue) - 992.85).abs() < 1e-9);
        assert_eq!(pl15.year, Some(2023));
    }

    #[test]
    fn default_is_the_world_average_and_says_so() {
        let s = resolve(None, None, None).unwrap();
        assert_eq!(s.intensity_g_per_kwh, 480.0);
        assert!(s.source.contains("world average") && s.source.contains("Ember"));
    }

    #[test]
    fn cloud_region_and_user_value() {
        let s = resolve(Some("gcp:europe-west1"), None, None).unwrap();
        assert!(s.source.contains("europe-west1"), "{}", s.source);
        let u = resolve(Some("POL"), Some(100.0), None).unwrap();
        assert_eq!(u.intensity_g_per_kwh, 100.0);
        assert!(u.source.contains("user"));
    }

    #[test]
    fn unknown_region_lists_the_closest_names() {
        let e = resolve(Some("Polnd"), None, None).unwrap_err().0;
        assert!(e.contains("closest") && e.contains("Poland"), "{e}");
        let e = resolve(Some("gcp:europe-wst1"), None, None).unwrap_err().0;
        assert!(e.contains("gcp:europe-west1"), "{e}");
        assert!(resolve(None, None, Some(0.5)).is_err());
    }

    #[test]
    fn per_item_and_per_million() {
        let s = resolve(None, Some(360.0), None).unwrap();
        let r = s.record(10.0, "rapl");
        assert!((r.co2e_per_item_g - 0.001).abs() < 1e-12);
        assert!((r.co2e_per_million_items_g - 1000.0).abs() < 1e-6);
    }
}
