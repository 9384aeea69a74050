//! End-to-end tests of the `infoat` binary, one module per theme (ripgrep's layout). They run
//! the real binary on real data (MNIST from `ci/fetch-data`, CIFAR/SVHN fixtures).

mod analyze;
mod attacks;
mod bench_scripts;
mod cli;
mod errors;
mod extra_data;
mod model_zoo;
mod presets;
mod pytorch_peer;
mod quickstart;
mod registry;
mod robustbench;
mod runs;
mod sweep;
