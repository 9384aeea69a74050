//! # infoat-harness
//!
//! Trains and evaluates the models of "InfoAT: Improving Adversarial Training Using the
//! Information Bottleneck Principle" through `tch` (libtorch). This is the only crate of the
//! workspace that links libtorch; `infoat-registry` hashes what it produces.
//!
//! Rooms:
//! - [`config`]: run configs (TOML, validated, every default written out; SPEC §2);
//! - [`data`]: datasets in their original formats, seeded batching and augmentation (SPEC §5, §2);
//! - [`models`]: SmallCNN, ResNet-18, WideResNet-34-10/28-10 with PyTorch names (SPEC §4);
//! - [`methods`]: training methods as pluggable outer losses (SPEC §2);
//! - [`attacks`]: projected-gradient ascent for inner maximisation and evaluation (SPEC §3);
//! - [`optim`]: SGD and Adam with saveable state (exact resume), their configs and LR schedules;
//! - [`losses`]: the per-example losses shared by methods, attacks, analyses and benchmarks;
//! - [`train`], [`eval`]: the training loop and evaluation;
//! - [`checkpoint`]: safetensors checkpoints and their canonical digest;
//! - [`interop`]: PyTorch's `torch.save` format, for RobustBench's layouts;
//! - [`seed`]: how every random draw derives from the run's seed;
//! - [`mod@env`]: the environment fingerprint recorded with runs;
//! - [`alloc`]: heap settings that keep tensor memory in the process between steps;
//! - [`preset`]: named sets of runs (`fixtures/presets/`);
//! - [`pipeline`]: config → trained, recorded, evaluated run; the only module that knows all rooms;
//! - [`cli`]: the `infoat` command line.

pub mod alloc;
pub mod analysis;
pub mod attacks;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod cost;
pub mod cuda_graph;
pub mod cuda_library;
pub mod data;
pub mod diagnostics;
pub mod env;
pub mod error;
pub mod eval;
pub mod evidence;
pub mod interop;
pub mod losses;
pub mod methods;
pub mod models;
pub mod numerics;
pub mod optim;
pub mod pipeline;
pub mod precision;
pub mod preset;
pub mod sanity;
pub mod seed;
pub mod train;

pub use error::{Error, Result};
