//! Analysis workflow: one of the paper's figures (Figs. 1, 4, 5) computed on a run and recorded.

use std::path::PathBuf;
use std::time::Instant;

use infoat_registry::Registry;
use serde::{Deserialize, Serialize};

use super::evaluate::load_checkpoint;
use super::train::find_run;
use super::{load_split, now_unix};
use crate::data::Split;
use crate::env::fingerprint;
use crate::{Error, Result};

/// Which of the paper's analyses (issue 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// Fig. 1: entropy of PGD survivors vs flipped examples; flipping radius vs entropy.
    Fig1,
    /// Fig. 4: weight loss landscape along a filter-normalised random direction.
    Fig4,
    /// Fig. 5: input loss surface around single examples.
    Fig5,
}

impl Figure {
    /// Its name in records and file names.
    pub fn name(self) -> &'static str {
        match self {
            Figure::Fig1 => "fig1",
            Figure::Fig4 => "fig4",
            Figure::Fig5 => "fig5",
        }
    }
}

/// What to analyse and how; unset fields take each figure's defaults.
#[derive(Debug, Clone)]
pub struct AnalysisRequest {
    /// The figure.
    pub figure: Figure,
    /// The run (config hash or unique prefix).
    pub run: String,
    /// Test images (fig1: 1,000; fig4: 500).
    pub n: Option<usize>,
    /// L∞ radius (default: the dataset's).
    pub eps: Option<f64>,
    /// PGD steps.
    pub steps: usize,
    /// Grid points per axis (fig4: 21; fig5: 21).
    pub points: Option<usize>,
    /// fig5: the test images (default 0, 1, 2, 3).
    pub examples: Vec<usize>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Data folder override.
    pub data_dir: Option<PathBuf>,
    /// Recompute even when the registry has it.
    pub force: bool,
}

/// Runs one analysis on one run, or finds it in the registry; records it. Returns the record
/// and whether it was reused.
pub fn analyze(req: &AnalysisRequest, registry: &Registry) -> Result<(infoat_registry::AnalysisRecord, bool)> {
    use crate::analysis::{fig1, fig4, fig5, ANALYSIS_SEMVER};
    crate::precision::configure_backends(crate::precision::Precision::Fp32);
    let run = find_run(registry, &req.run)?;
    let cfg = run.config()?;
    let device = cfg.device.device()?;
    let ds = cfg.data.dataset;
    let eps = req.eps.unwrap_or(ds.default_eps());
    let params = match req.figure {
        Figure::Fig1 => serde_json::to_value(fig1::Fig1Params {
            n: req.n.unwrap_or(1000),
            eps,
            steps: req.steps,
            eps_hi: (2.0 * eps).min(1.0),
            iterations: 10,
            bins: 20,
            seed: req.seed,
        })?,
        Figure::Fig4 => serde_json::to_value(fig4::Fig4Params {
            n: req.n.unwrap_or(500),
            eps,
            steps: req.steps,
            points: req.points.unwrap_or(21),
            seed: req.seed,
        })?,
        Figure::Fig5 => serde_json::to_value(fig5::Fig5Params {
            examples: if req.examples.is_empty() { vec![0, 1, 2, 3] } else { req.examples.clone() },
            eps,
            steps: req.steps,
            points: req.points.unwrap_or(21),
            seed: req.seed,
        })?,
    };
    let model_hash = run
        .record
        .checkpoint_hash
        .ok_or_else(|| Error::Invalid(format!("run {} has no checkpoint", run.record.config_hash.short(12))))?;
    let key = infoat_registry::AnalysisRecord::key_for(req.figure.name(), &model_hash, &params, ANALYSIS_SEMVER)?;
    if !req.force {
        if let Some(found) = registry.find_analysis(&key)? {
            return Ok((found, true));
        }
    }
    let start = Instant::now();
    let (model, _, _, loaded_hash) = load_checkpoint(&run.checkpoint_path, Some(cfg.model.arch), Some(ds), device)?;
    if loaded_hash != model_hash {
        return Err(Error::Checkpoint {
            path: run.checkpoint_path.clone(),
            message: format!("its tensors hash to {loaded_hash}, the run record says {model_hash}"),
        });
    }
    let data_dir = req.data_dir.clone().or(run.data_dir());
    let (test, _) = load_split(ds, data_dir.as_deref(), Split::Test)?;
    let batch = cfg.train.eval_batch_size;
    let bad = |e: serde_json::Error| Error::Invalid(format!("analysis parameters: {e}"));
    let result = match req.figure {
        Figure::Fig1 => serde_json::to_value(fig1::fig1(
            &model,
            &test,
            &serde_json::from_value(params.clone()).map_err(bad)?,
            batch,
        )?)?,
        Figure::Fig4 => serde_json::to_value(fig4::fig4(
            &model,
            &test,
            &serde_json::from_value(params.clone()).map_err(bad)?,
            batch,
        )?)?,
        Figure::Fig5 => {
            serde_json::to_value(fig5::fig5(&model, &test, &serde_json::from_value(params.clone()).map_err(bad)?)?)?
        }
    };
    let record = infoat_registry::AnalysisRecord {
        figure: req.figure.name().to_string(),
        model_hash,
        config_hash: Some(run.record.config_hash),
        params,
        analysis_semver: ANALYSIS_SEMVER.to_string(),
        result,
        seconds: start.elapsed().as_secs_f64(),
        finished_unix: now_unix(),
        env: fingerprint(device),
    };
    registry.put_analysis(&record)?;
    Ok((record, false))
}
