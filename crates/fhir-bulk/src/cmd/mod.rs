//! One module per subcommand: its clap `Args` and its `run`.

pub mod clients;
pub mod demo;
pub mod export;
pub mod keygen;
pub mod load;
pub mod serve;
pub mod synth;
pub mod tenants;
