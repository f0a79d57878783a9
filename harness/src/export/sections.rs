//! The content of the report (context, results, comparison with the baseline, best variants and
//! projection, method and caveats) as format-free sections that the Markdown and HTML exporters
//! render.

use super::numbers::{banded, opt, with_band};
use super::numbers::{co2e, distance, energy, kwh, time};
use super::table::{results_table, Shown, Table};
use crate::analysis::compare::{variant_rows, ENERGY_REL_FLOOR};
use crate::analysis::recommend::{across_engines, recommendations};
use crate::analysis::{energy_sources, QualityBudget, RunData, Volume};
use crate::carbon::CAR_FACTOR_SOURCE;
use crate::export::method::method_text;
use crate::results::{Record, Status};
use crate::units::sig;

/// One section of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// Paragraphs before the table.
    pub paragraphs: Vec<String>,
    /// The table, if any.
    pub table: Option<Table>,
}

fn s(v: &str) -> String {
    v.to_string()
}

fn context(data: &RunData) -> Section {
    let m = &data.manifest;
    let host = data.records.first().map(|r| &r.host);
    let mut devices: Vec<String> = data.records.iter().map(|r| r.key.device.clone()).collect();
    devices.dedup();
    let (sources, measured) = energy_sources(&data.records);
    let c = &m.spec.carbon;
    let mut rows = vec![
        vec![s("run"), m.run_id.clone()],
        vec![s("date (UTC)"), m.started_utc.clone()],
        vec![
            s("slimbench"),
            format!("{} (commit {})", m.slimbench_version, m.commit),
        ],
        vec![
            s("host"),
            host.map(|h| {
                format!(
                    "{}, {} logical cores, {:.1} GiB, {}",
                    h.cpu_model,
                    h.logical_cores,
                    h.total_memory_bytes as f64 / (1u64 << 30) as f64,
                    h.os
                )
            })
            .unwrap_or_default(),
        ],
        vec![s("devices"), devices.join(", ")],
        vec![
            s("energy"),
            format!(
                "{} ({})",
                sources.join(", "),
                if measured {
                    "measured"
                } else {
                    "ESTIMATED, not measured"
                }
            ),
        ],
        vec![
            s("grid intensity"),
            format!(
                "{} g CO2e/kWh: {}{}",
                c.intensity_g_per_kwh,
                c.source,
                c.year
                    .map(|y| format!(" (figure of {y})"))
                    .unwrap_or_default()
            ),
        ],
        vec![s("PUE"), format!("{}", c.pue)],
    ];
    let used = crate::analysis::carbon_settings_used(&data.records);
    if used.len() > 1 {
        // Shares merged with different settings: say so, and what each group of cells used.
        rows.retain(|r| r[0] != "grid intensity" && r[0] != "PUE");
        rows.push(vec![
            s("grid intensity and PUE"),
            format!(
                "MIXED, each cell its own (shares merged with different settings): {}",
                used.iter()
                    .map(|(i, src, p, n)| format!("{i} g CO2e/kWh ({src}), PUE {p}: {n} cells"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ]);
    }
    let rounds: Vec<&crate::results::RoundFigures> =
        data.records.iter().flat_map(|r| r.rounds.iter()).collect();
    if !rounds.is_empty() {
        rows.push(vec![
            s("rounds"),
            format!(
                "{} a cell, each a fresh worker, the cells in a new random order each round (seed {:#x})",
                m.spec.timing.rounds, m.spec.order_seed
            ),
        ]);
        let steal = rounds
            .iter()
            .filter_map(|r| r.interference.map(|i| i.steal_share))
            .fold(0.0, f64::max);
        // Steal over every timed window, weighted by its length: the run's total.
        let (stolen, timed) = rounds
            .iter()
            .filter_map(|r| {
                r.interference
                    .map(|i| (i.steal_share * r.window_s, r.window_s))
            })
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let others = rounds
            .iter()
            .filter_map(|r| r.interference.map(|i| i.other_cpu_share))
            .fold(0.0, f64::max);
        let (disturbed, retried) = data
            .records
            .iter()
            .map(|r| r.disturbance())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        rows.push(vec![
            s("interference"),
            format!(
                "steal {:.2}% of the CPUs' time over all {:.1} s of timed windows, at most {:.1}% in a round; other processes at most {:.1}% of the CPUs in a round; {retried} round(s) measured again for disturbance, {disturbed} of {} kept rounds still disturbed (limits: steal {:.0}%, others {:.0}%)",
                if timed > 0.0 { 100.0 * stolen / timed } else { 0.0 },
                timed,
                100.0 * steal,
                100.0 * others,
                rounds.len(),
                100.0 * crate::interference::STEAL_LIMIT,
                100.0 * crate::interference::OTHER_CPU_LIMIT
            ),
        ]);
    }
    for check in crate::analysis::compare::aa_checks(&data.records) {
        let setting = format!(
            "{} vs {} ({}, {}, batch {})",
            check.control.technique,
            check.twin.technique,
            check.control.model,
            check.control.device,
            check.control.batch_size
        );
        let verdict = match (check.ratio, check.stable()) {
            (Some(p), Some(true)) => format!(
                "{setting}: same architecture, latency ratio {:.3} [{:.3}, {:.3}]: they agree; the machine was stable enough to trust differences beyond the intervals",
                p.ratio, p.ci95.lo, p.ci95.hi
            ),
            (Some(p), _) => format!(
                "{setting}: same architecture, latency ratio {:.3} [{:.3}, {:.3}]: they DIFFER; the machine drifted during the run, so treat speed differences under {:.0}% as unproven",
                p.ratio,
                p.ci95.lo,
                p.ci95.hi,
                100.0 * (p.ratio.max(1.0 / p.ratio) - 1.0)
            ),
            _ => format!("{setting}: no rounds to pair, no verdict"),
        };
        rows.push(vec![s("A/A check"), verdict]);
    }
    if let Some(p) = data
        .records
        .iter()
        .find_map(|r| r.energy.as_ref()?.estimate.as_ref())
    {
        rows.push(vec![s("energy estimate"), p.describe()]);
    }
    Section {
        title: s("Context"),
        paragraphs: vec![],
        table: Some(Table {
            header: vec![s("what"), s("value")],
            rows,
        }),
    }
}

fn results(records: &[Record], measured: bool) -> Section {
    let mut paragraphs = vec![s(
        "Every cell as measured. Latency is per timed call (see Method and caveats for what one call is in each family); the mean is over every timed iteration, the statistic energy per item shares (energy of the timed window over the items it processed).",
    )];
    if !measured {
        paragraphs.push(s(
            "Estimated energy is the model's power at the worker's utilisation (its CPU time over the window and the vCPUs), plus RAM, given with its band [low-high] (see the context's 'energy estimate'); 'vCPUs busy' is that CPU time over the wall time. A variant that keeps more vCPUs busy is charged more energy even at the same speed.",
        ));
    }
    Section {
        title: s("Results"),
        paragraphs,
        table: Some(results_table(records, measured, Shown::InReport)),
    }
}

fn yes_no(v: bool) -> String {
    if v {
        s("yes")
    } else {
        s("no")
    }
}

fn against_baseline(records: &[Record], budget: QualityBudget, measured: bool) -> Section {
    let est = if measured { "" } else { " (estimated)" };
    let rows = variant_rows(records, budget)
        .into_iter()
        .map(|v| {
            let mut role = if v.control {
                s("control")
            } else {
                s("variant")
            };
            if v.quality.is_some_and(|q| q.is_tie()) {
                role.push_str(", quality tie");
            }
            let build = records
                .iter()
                .find(|r| r.key == v.key)
                .zip(v.energy)
                .and_then(|(r, e)| {
                    crate::analysis::projection::build_summary(
                        r,
                        e.baseline_j - e.variant_j,
                        Volume::default(),
                    )
                });
            vec![
                v.key.to_string(),
                role,
                opt(v.quality.map(|q| q.delta_points), |d| format!("{d:+.2}")),
                opt(v.quality.map(|q| q.half_width_points), |h| {
                    format!("{h:.2}")
                }),
                v.quality
                    .and_then(|q| q.mcnemar_p)
                    .map(|p| {
                        if p < 1e-4 {
                            s("< 0.0001")
                        } else {
                            format!("{p:.4}")
                        }
                    })
                    .unwrap_or_else(|| "-".into()),
                v.quality
                    .map(|q| q.items.to_string())
                    .unwrap_or_else(|| "-".into()),
                yes_no(v.within_budget),
                yes_no(v.meets_99),
                yes_no(v.meets_99_9),
                v.speed
                    .map(|x| {
                        format!(
                            "{} -> {}",
                            time(x.baseline_mean_ms),
                            time(x.variant_mean_ms)
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
                v.speed
                    .map(|x| {
                        format!(
                            "{:.2}x [{:.2}, {:.2}]{}",
                            x.speedup,
                            x.speedup_lo,
                            x.speedup_hi,
                            if x.is_tie() { " tie" } else { "" }
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
                v.energy
                    .map(|e| format!("{} -> {}", energy(e.baseline_j), energy(e.variant_j)))
                    .unwrap_or_else(|| "-".into()),
                v.energy
                    .map(|e| {
                        format!(
                            "{:+.1}% +/- {:.1}{}",
                            e.saved_pct,
                            e.half_width_pct,
                            if e.is_tie() { " tie" } else { "" }
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
                v.bytes
                    .map(|(b, c)| {
                        format!(
                            "{} -> {} KiB ({:.0}%)",
                            sig(b as f64 / 1024.0, 3),
                            sig(c as f64 / 1024.0, 3),
                            100.0 * c as f64 / b.max(1) as f64
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
                build_text(build.as_ref()),
                build
                    .as_ref()
                    .and_then(|b| b.payback_items)
                    .map(|n| format!("{} inferences", sig(n, 3)))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    Section {
        title: s("Variants against their baseline"),
        paragraphs: vec![format!(
            "Each variant against the uncompressed model (fp32) of the same model, device and batch size, with the baseline's and the variant's own figures beside every ratio. Quality change carries a 95% interval (+/- points); where both models answered the same classification items it is paired, with McNemar's exact p-value over n items, and p >= 0.05 is a tie; elsewhere a change inside the interval is a tie. Budgets: within {} point(s) (absolute), and MLPerf's tiers, at least 99% and 99.9% of the baseline's quality. Each cell is measured in rounds, each round a fresh worker with the cells in a new random order; speed-up and energy saving are the geometric means of the per-round ratios (the two cells of one round measured minutes apart, so drift between rounds cancels), with the 95% t-interval over rounds; a record of one worker (no rounds) falls back to the means' intervals, energy with the timing's relative uncertainty (at least {:.0}%). Control arms (labels-only students) measure what a technique adds and are never recommended.",
            budget.max_drop_points,
            100.0 * ENERGY_REL_FLOOR
        )],
        table: Some(Table {
            header: vec![
                s("cell"),
                s("role"),
                s("quality change (points)"),
                s("+/- (95%)"),
                s("McNemar p"),
                s("n items"),
                format!("within {} point", budget.max_drop_points),
                s(">= 99%"),
                s(">= 99.9%"),
                s("mean / batch: fp32 -> variant"),
                s("speed-up [95% CI]"),
                format!("energy / item{est}: fp32 -> variant"),
                format!("energy saved{est} +/- (95%)"),
                s("size: fp32 -> variant"),
                format!("build energy{est}"),
                s("pays back after"),
            ],
            rows,
        }),
    }
}

/// What building a variant cost, in words.
fn build_text(b: Option<&crate::analysis::projection::BuildSummary>) -> String {
    b.map(|b| match b.energy_j {
        Some(j) => format!(
            "{} in {} s ({}{})",
            energy(j),
            sig(b.seconds, 3),
            b.source,
            if b.cached {
                ", recorded when built"
            } else {
                ""
            }
        ),
        None => format!("{} s (not metered)", sig(b.seconds, 3)),
    })
    .unwrap_or_else(|| "-".into())
}

/// A projected figure with its band where the energy is estimated.
fn projected(
    p: Option<crate::analysis::projection::Projection>,
    of: impl Fn(&crate::analysis::projection::Projection) -> f64,
    fmt: impl Fn(f64) -> String,
) -> String {
    let Some(p) = p else {
        return "-".into();
    };
    let central = of(&p);
    banded(central, p.band_of(central), fmt)
}

fn recommendation(
    data: &RunData,
    budget: QualityBudget,
    volume: Volume,
    measured: bool,
) -> Section {
    let est = if measured { "" } else { " (estimated)" };
    let recs = recommendations(&data.records, budget, &data.manifest.spec.carbon, volume);
    let mut rows = Vec::new();
    let mut paragraphs = vec![format!(
        "For each model, device, engine and batch size: among the variants within {} point(s) of the baseline's quality (control arms excluded), the one with the least energy per item; variants whose energy is within the measurement's uncertainty of it are tied, and the tie goes to the better quality (a difference inside the binomial interval is itself a tie), then to the smaller model. When even the best saving lies inside its uncertainty, keep the baseline. Build energy is what making the pick cost (its training steps, metered like a cell, and its post-training step; not the base it shares with the baseline; a cached step's cost is the one recorded when it was built); it pays back after build energy / energy saved per inference. Projection: {} inferences a day for {} days; car equivalent: {}.",
        budget.max_drop_points,
        sig(volume.items_per_day, 3),
        volume.days,
        CAR_FACTOR_SOURCE
    )];
    for r in &recs {
        let engine = if r.baseline.engine.is_default() {
            String::new()
        } else {
            format!(" on {}", r.baseline.engine)
        };
        let setting = format!(
            "{} / {}{engine} / batch {}",
            r.baseline.model,
            r.baseline.device,
            r.baseline.batch_label()
        );
        let pick = r.pick.as_ref();
        rows.push(vec![
            setting.clone(),
            pick.map(|p| p.key.variant_label())
                .unwrap_or_else(|| format!("keep {}", r.baseline.variant_label())),
            opt(pick.and_then(|p| p.energy).map(|e| e.saved_pct), |v| {
                format!("{v:.0}%")
            }),
            opt(pick.and_then(|p| p.energy).map(|e| e.half_width_pct), |v| {
                format!("{v:.1}%")
            }),
            pick.and_then(|p| p.speed)
                .map(|x| {
                    format!(
                        "{:.2}x [{:.2}, {:.2}]",
                        x.speedup, x.speedup_lo, x.speedup_hi
                    )
                })
                .unwrap_or_else(|| "-".into()),
            pick.and_then(|p| p.quality)
                .map(|q| format!("{:+.2} +/- {:.2}", q.delta_points, q.half_width_points))
                .unwrap_or_else(|| "-".into()),
            opt(pick.and_then(|p| p.size_ratio()), |v| {
                format!("{:.0}%", 100.0 * v)
            }),
            projected(r.projection, |p| p.kwh_saved, kwh),
            projected(r.projection, |p| p.kg_co2e_saved * 1e3, co2e),
            projected(r.projection, |p| p.car_km, distance),
            build_text(r.build.as_ref()),
            r.build
                .as_ref()
                .and_then(|b| b.payback_items.zip(b.payback_days))
                .map(|(n, d)| format!("{} inferences ({} days)", sig(n, 3), sig(d, 3)))
                .unwrap_or_else(|| "-".into()),
            opt(r.kwh_saved_net, kwh),
        ]);
        paragraphs.push(format!("{setting}: {}.", r.reason));
    }
    if recs.is_empty() {
        paragraphs.push(s("No setting has both a baseline and a variant measured."));
    }
    for choice in across_engines(&recs, &data.records) {
        let c = &choice.candidates[0].0;
        paragraphs.push(format!(
            "Across engines, {} / {} / batch {}: {}.",
            c.model,
            c.device,
            c.batch_label(),
            choice.reason
        ));
    }
    Section {
        title: s("Recommendation"),
        paragraphs,
        table: Some(Table {
            header: vec![
                s("where"),
                s("ship"),
                format!("energy saved{est}"),
                s("+/- (95%)"),
                s("speed-up [95% CI]"),
                s("quality change (points)"),
                s("size vs fp32"),
                format!("saved / year{est}"),
                format!("CO2e saved / year{est}"),
                s("as car distance"),
                format!("build energy{est}"),
                s("pays back after"),
                format!("saved / year net of build{est}"),
            ],
            rows,
        }),
    }
}

fn glossary(records: &[Record]) -> Section {
    let mut steps: Vec<&slimbench_models::technique::NamedStep> = Vec::new();
    for r in records {
        for step in r.key.technique.steps() {
            if !steps.iter().any(|s| s.name == step.name) {
                steps.push(step);
            }
        }
    }
    let rows = steps
        .into_iter()
        .map(|step| {
            let about = if step.is_control() {
                format!("{}. A CONTROL ARM: it measures what the technique it controls adds, and is never recommended", step.about())
            } else {
                step.about()
            };
            vec![step.name.clone(), s(step.def.family.name()), about]
        })
        .collect();
    Section {
        title: s("Glossary of the techniques in this run"),
        paragraphs: vec![s(
            "A chain A+B applies A, then B; a quantization or cast always comes last.",
        )],
        table: Some(Table {
            header: vec![s("technique"), s("family"), s("what it does")],
            rows,
        }),
    }
}

/// The Software Carbon Intensity (ISO/IEC 21031:2024) of each measured cell, operational and
/// embodied apart.
fn sci(data: &RunData, measured: bool) -> Section {
    let est = if measured { "" } else { " (estimated)" };
    const R: f64 = 1000.0;
    let spec = &data.manifest.spec;
    let mut sources: Vec<String> = Vec::new();
    let rows = data
        .records
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| {
            let e = r.energy.as_ref()?;
            let c = r.carbon.as_ref()?;
            let kwh_per_r = e.energy_per_item_j * R / 3.6e6 * c.pue;
            let operational = kwh_per_r * c.intensity_g_per_kwh;
            let embodied = crate::carbon::Embodied::for_host(
                r.host.total_memory_bytes,
                e.estimate.as_ref().is_some_and(|p| p.virtual_machine),
                spec.embodied_kg,
                spec.lifetime_years,
            );
            if !sources.contains(&embodied.source) {
                sources.push(embodied.source.clone());
            }
            // The host's time for R inferences, and the share of it the cell's threads hold.
            let seconds = R / r.throughput_items_per_s.filter(|t| *t > 0.0)?;
            let share = r.threads.unwrap_or(r.host.logical_cores) as f64
                / r.host.logical_cores.max(1) as f64;
            let m = embodied.grams(seconds, share);
            Some(vec![
                r.key.to_string(),
                with_band(kwh_per_r * 3.6e6, e.band_factors(), energy),
                format!("{}", c.intensity_g_per_kwh),
                with_band(operational, e.band_factors(), co2e),
                format!(
                    "{} ({} kg over {} years, {:.0}% of the host)",
                    co2e(m),
                    sig(embodied.kg, 4),
                    embodied.lifetime_years,
                    100.0 * share.min(1.0)
                ),
                co2e(operational + m),
            ])
        })
        .collect();
    let mut paragraphs = vec![s(
        "SCI = (E x I + M) per R (ISO/IEC 21031:2024), with R = 1,000 inferences: E is the energy of 1,000 inferences (PUE applied), I the grid intensity, so E x I is the operational part. M, the embodied part, is the host's embodied emissions time-shared: TE x (time of 1,000 inferences / expected life) x (the cell's threads / the host's logical CPUs).",
    )];
    for source in sources {
        paragraphs.push(format!("Embodied emissions (TE) and life: {source}."));
    }
    Section {
        title: s("Software Carbon Intensity"),
        paragraphs,
        table: Some(Table {
            header: vec![
                s("cell"),
                format!("E per 1,000 inferences{est}"),
                s("I (g CO2e/kWh)"),
                format!("operational E x I{est}"),
                s("embodied M (share of the host)"),
                format!("SCI, CO2e per 1,000 inferences{est}"),
            ],
            rows,
        }),
    }
}

/// The language models' phases and quality, one row a cell: the figures llama.cpp's
/// `llama-bench` and `llama-perplexity` give, beside the energy of each phase.
fn language_models(records: &[Record], measured: bool) -> Option<Section> {
    let rows: Vec<Vec<String>> = records
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| {
            let g = r.generation.as_ref()?;
            let lm = r.quality.as_ref().and_then(|q| q.language.as_ref());
            Some(vec![
                r.key.model.clone(),
                r.key.technique.to_string(),
                format!("{}+{}", g.prompt_tokens, g.gen_tokens),
                opt(r.model_bytes.map(|b| b as f64 / 1e6), |v| format!("{v:.1}")),
                opt(lm.map(|m| m.perplexity), |v| format!("{v:.2}"))
                    + &opt(lm.map(|m| m.perplexity_err), |v| format!(" ± {v:.2}")),
                opt(lm.map(|m| m.kld_mean), |v| sig(v, 3)),
                opt(lm.map(|m| m.kld_p99), |v| sig(v, 3)),
                opt(lm.map(|m| m.top1_agreement_pct), |v| format!("{v:.2}")),
                format!("{:.1}", g.prefill_tokens_per_s),
                format!("{:.1}", g.decode_tokens_per_s),
                opt(g.ttft_ms.as_ref().map(|t| t.p50_ms), time),
                energy(g.prefill_j_per_token),
                energy(g.decode_j_per_token),
                opt(g.co2e_per_1000_generated_tokens_g, co2e),
                g.energy_source.clone(),
            ])
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let kind = if measured { "measured" } else { "ESTIMATED" };
    let reference = records.iter().find_map(|r| {
        r.quality
            .as_ref()?
            .language
            .as_ref()
            .map(|m| (m.reference.clone(), m.ctx, m.chunks))
    });
    let mut paragraphs = vec![format!(
        "Prefill: the prompt in one pass per repetition (tokens/s, time to first token); decode: one \
         generated token per step, greedy, over a cache of between the prompt and the prompt plus the \
         generated tokens. Each phase has its own timed window and energy ({kind}); J per token is \
         that window's energy over its tokens."
    )];
    if let Some((reference, ctx, chunks)) = reference {
        paragraphs.push(format!(
            "Quality as llama.cpp's llama-perplexity defines it, on {chunks} chunks of {ctx} tokens of \
             held-out text (the second half of each chunk scored): perplexity, KL divergence of the \
             next-token distribution from the reference's (nats), and top-1 agreement. Reference: {reference}."
        ));
    }
    Some(Section {
        title: s("Language models: prefill, decode and quality"),
        paragraphs,
        table: Some(Table {
            header: [
                "model",
                "technique",
                "prompt+generated",
                "size MB",
                "perplexity",
                "KLD mean",
                "KLD p99",
                "top-1 %",
                "prefill tok/s",
                "decode tok/s",
                "TTFT p50",
                "J/prefill token",
                "J/decode token",
                "CO2e per 1000 generated tokens",
                "energy source",
            ]
            .iter()
            .map(|h| s(h))
            .collect(),
            rows,
        }),
    })
}

/// A record's quality for the engines' table: fidelity (cosine to fp32) where the model has it,
/// else its metric's value.
fn quality_text(r: &Record) -> String {
    match r.quality.as_ref() {
        Some(q) => match q.fidelity {
            Some(f) => format!("cosine {f:.5}"),
            None => format!("{} {:.2}%", q.metric, q.value_pct),
        },
        None => "-".into(),
    }
}

/// The same model, technique, device and batch on each engine of the run, side by side: one row
/// a cell that ran on more than one engine, with each engine's median latency, energy per item and
/// quality, and the other engines' latency as a ratio to slimbench's. `None` for a run on one
/// engine.
fn engines_side_by_side(records: &[Record], measured: bool) -> Option<Section> {
    let mut engines: Vec<slimbench_models::engine::Engine> =
        records.iter().map(|r| r.key.engine).collect();
    engines.sort();
    engines.dedup();
    if engines.len() < 2 {
        return None;
    }
    let ok: Vec<&Record> = records.iter().filter(|r| r.status == Status::Ok).collect();
    let mut rows = Vec::new();
    let mut seen: Vec<&slimbench_models::workload::Cell> = Vec::new();
    for r in &ok {
        let on = |engine| {
            ok.iter().copied().find(|o| {
                o.key.engine == engine
                    && o.key.technique == r.key.technique
                    && o.key.model == r.key.model
                    && o.key.device == r.key.device
                    && o.key.batch_size == r.key.batch_size
                    && o.key.dims == r.key.dims
            })
        };
        let cells: Vec<Option<&Record>> = engines.iter().map(|e| on(*e)).collect();
        let first = cells.iter().flatten().next().map(|c| &c.key);
        if cells.iter().flatten().count() < 2 || first.is_some_and(|k| seen.contains(&k)) {
            continue;
        }
        seen.extend(first);
        let own_p50 = cells[0].and_then(|c| c.latency.as_ref()).map(|l| l.p50_ms);
        let mut row = vec![
            r.key.model.clone(),
            r.key.technique.to_string(),
            r.key.device.clone(),
            r.key.batch_label(),
        ];
        for (i, c) in cells.iter().enumerate() {
            let p50 = c.and_then(|c| c.latency.as_ref()).map(|l| l.p50_ms);
            let mut latency = opt(p50, time);
            if let (true, Some(p), Some(own)) = (i > 0, p50, own_p50) {
                latency.push_str(&format!(" ({:.2}x)", p / own));
            }
            row.push(latency);
            row.push(
                c.and_then(|c| c.energy.as_ref())
                    .map(|e| with_band(e.energy_per_item_j, e.band_factors(), energy))
                    .unwrap_or_else(|| "-".into()),
            );
            row.push(c.map_or_else(|| "-".into(), quality_text));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return None;
    }
    let est = if measured { "" } else { " (estimated)" };
    let mut header = vec![s("model"), s("technique"), s("device"), s("batch")];
    for e in &engines {
        header.push(format!("{e}: p50 / batch"));
        header.push(format!("{e}: energy / item{est}"));
        header.push(format!("{e}: quality"));
    }
    Some(Section {
        title: s("Engines side by side"),
        paragraphs: vec![format!(
            "The same variant on each engine: slimbench's own (its own kernels) and \
             ONNX Runtime (ort: the variant written as an ONNX graph, each Linear in the ONNX form \
             of the technique, run by ONNX Runtime's CPU provider with the cell's threads, \
             sequential execution and every graph optimisation; the record's \
             technique_params.engine names the library, its version and the operators). The ratio \
             after another engine's latency is its median over slimbench's: below 1 it is faster. \
             Each engine's variants are compared with its own fp32 in the other sections."
        )],
        table: Some(Table { header, rows }),
    })
}

/// Every section of the report, in order.
pub fn sections(data: &RunData) -> Vec<Section> {
    let budget = data.budget();
    let (_, measured) = energy_sources(&data.records);
    let language = language_models(&data.records, measured);
    vec![
        context(data),
        recommendation(data, budget, Volume::default(), measured),
        against_baseline(&data.records, budget, measured),
        results(&data.records, measured),
    ]
    .into_iter()
    .chain(engines_side_by_side(&data.records, measured))
    .chain(language)
    .chain([
        sci(data, measured),
        glossary(&data.records),
        Section {
            title: s("Method and caveats"),
            paragraphs: method_text(data),
            table: None,
        },
    ])
    .collect()
}
