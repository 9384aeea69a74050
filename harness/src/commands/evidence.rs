//! `infoat evidence export|import`: adversarial images in RobustBench's external-evaluation
//! layout (issue 21; [`infoat_harness::pipeline::external`]).

use std::process::ExitCode;

use anyhow::Result;
use infoat_harness::cli::{EvidenceAction, EvidenceCmd};
use infoat_harness::pipeline::evaluate::ModelSource;
use infoat_harness::pipeline::evidence::select;
use infoat_harness::pipeline::external::{export, import, ImportModel};
use infoat_registry::Registry;

pub(crate) fn run(a: EvidenceCmd) -> Result<ExitCode> {
    let registry = Registry::open(&a.registry)?;
    match a.action {
        EvidenceAction::Export { key, out } => {
            let record = select(&registry, &[key], false)?.remove(0);
            let done = export(&registry, &record, &out)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                let e = &done.evaluation;
                println!(
                    "{} images of {} at eps {} ({}): robust {} under {}",
                    e.n_examples,
                    e.dataset,
                    e.eps,
                    e.model,
                    e.robust_accuracy.map_or("unknown".to_string(), |r| format!("{:.2} %", 100.0 * r)),
                    e.attack
                );
                for f in &done.files {
                    println!("{}", f.display());
                }
            }
        }
        EvidenceAction::Import { dir, run, checkpoint, torchscript, arch, data_dir, device } => {
            let model = match (run, checkpoint, torchscript) {
                (Some(hash), _, _) => ImportModel::Source(ModelSource::Run { hash }),
                (_, Some(path), _) => ImportModel::Source(ModelSource::Checkpoint { path, arch }),
                (_, _, Some(path)) => ImportModel::Source(ModelSource::TorchScript { path }),
                _ => ImportModel::Folder,
            };
            let done = import(&registry, &dir, model, data_dir.as_deref(), device.device()?)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                println!(
                    "{} images: {} refused (outside the eps-ball or [0, 1]), {} verified adversarial; robust under them: {:.2} %",
                    done.images,
                    done.rejected,
                    done.broken,
                    100.0 * done.external_acc
                );
                match (done.merged_into, done.worst_case_before) {
                    (Some(base), Some(before)) => println!(
                        "merged into evaluation {}: worst case {:.2} % -> {:.2} %",
                        base.short(16),
                        100.0 * before,
                        100.0 * done.worst_case_after
                    ),
                    _ => println!("no evaluation of this model on these images yet: recorded on its own"),
                }
                println!("evaluation key: {}", done.key);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
