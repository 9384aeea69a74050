//! The ecosystem's file formats (issues 21, 23): PyTorch's `torch.save` archives read and
//! written without Python ([`torch_file`]), for RobustBench's external evaluations and the
//! model zoo's checkpoints.

pub mod torch_file;
