//! `infoat bench`: training-step or attack throughput, the largest batch that fits, or a
//! device's agreement with CPU fp32.

use std::process::ExitCode;

use anyhow::{Context, Result};
use infoat_harness::cli::BenchArgs;
use serde_json::json;

pub(crate) fn run(a: BenchArgs) -> Result<ExitCode> {
    use infoat_harness::bench::{self, BenchSpec};
    if let Some(dir) = &a.summarize {
        let results = infoat_reports::bench::BenchResults::load(dir)?;
        print!("{}", infoat_reports::bench::render_bench(&results)?);
        return Ok(ExitCode::SUCCESS);
    }
    let device = if a.cuda_graph {
        // The shim first: where it cannot load, that is the reason to give, device or not.
        let support = infoat_harness::cuda_graph::support()?;
        let device = a.device.device().with_context(|| format!("--cuda-graph ({support}) needs a CUDA device"))?;
        if device == tch::Device::Cpu {
            anyhow::bail!(
                "--cuda-graph needs a CUDA device (a graph records CUDA work), and --device {} gave the CPU",
                clap::ValueEnum::to_possible_value(&a.device).map_or_else(String::new, |v| v.get_name().to_string())
            );
        }
        device
    } else {
        a.device.device()?
    };
    if a.cudnn_benchmark {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    if a.agreement {
        let step = infoat_harness::attacks::default_step(a.dataset.default_eps());
        let r = bench::agreement(&bench::AgreementSpec {
            arch: a.arch,
            dataset: a.dataset,
            device,
            precision: a.precision,
            channels_last: a.channels_last,
            n: a.n,
            step,
            seed: a.seed,
        })?;
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "{} on {} ({}{}) vs cpu fp32, {} examples: logits rel. max diff {:.2e}, argmax agree {:.4}, \
                 input-grad sign agree {:.4} (cosine {:.6}), one PGD step (size {:.4}) same direction {:.4}, max diff {:.2e}",
                r.arch,
                r.device,
                r.precision,
                if r.channels_last { ", channels-last" } else { "" },
                r.n,
                r.logits_rel_max_diff,
                r.argmax_agreement,
                r.grad_sign_agreement,
                r.grad_cosine,
                r.step,
                r.pgd_step_agreement,
                r.pgd_step_max_diff
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let spec = BenchSpec {
        arch: a.arch,
        dataset: a.dataset,
        method: a.method.config(a.inner_steps),
        batch_size: a.batch_size,
        device,
        precision: a.precision,
        channels_last: a.channels_last,
        warmup: a.warmup,
        steps: a.steps,
        seed: a.seed,
        work: a.work,
        cuda_graph: a.cuda_graph,
    };
    if a.max_batch {
        let found = bench::max_batch(&spec, a.max_batch_limit, 8)?;
        if a.json {
            println!(
                "{}",
                json!({"arch": a.arch.name(), "precision": a.precision, "channels_last": a.channels_last, "max_batch": found, "limit": a.max_batch_limit})
            );
        } else {
            match found {
                Some(b) if b >= a.max_batch_limit => println!("max batch: at least {b} (the search limit)"),
                Some(b) => println!("max batch: {b}"),
                None => println!("max batch: even {} does not fit", a.batch_size),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = bench::throughput(&spec)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let what = match r.work {
            bench::Work::TrainStep => format!("{} (PGD-{})", r.method, r.inner_steps),
            bench::Work::Pgd => format!("{} (PGD-{}, inner maximisation only)", r.method, r.inner_steps),
            bench::Work::ApgdCe => "APGD-CE attack".to_string(),
        };
        println!(
            "{} {} on {} [{}], {}{}{}, batch {}: {:.1} ms/step, {:.0} images/s ({:.1} s per epoch); heap: {}{}",
            r.arch,
            what,
            r.device,
            r.device_name,
            r.precision,
            if r.channels_last { ", channels-last" } else { "" },
            r.graph_check.map_or(String::new(), |c| format!(
                ", attack in a CUDA graph (equal to the eager attack on {:.2} % of pixels, max |diff| {:.1e}; the \
                 eager attack twice: {:.2} %)",
                100.0 * c.equal_fraction,
                c.max_abs_diff,
                100.0 * c.eager_repeat_equal_fraction
            )),
            r.batch_size,
            r.ms_per_step,
            r.images_per_second,
            r.epoch_seconds,
            r.allocator,
            r.peak_rss_mib.map_or(String::new(), |m| format!("; peak memory {m:.0} MiB"))
        );
    }
    Ok(ExitCode::SUCCESS)
}
