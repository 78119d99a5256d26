//! Errors of the data-path layer, each saying what to do about it.
use std::{io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "the embedded eBPF object is empty: this binary was built with AYA_BUILD_SKIP=1; \
         rebuild it without that variable (cargo xtask build)"
    )]
    EmptyObject,

    #[error("cannot load the eBPF object: {0}")]
    Load(Box<aya::EbpfError>),

    #[error("the eBPF object has no program `{0}`: the binary and its embedded object disagree")]
    MissingProgram(&'static str),

    #[error("the eBPF object has no map `{0}`: the binary and its embedded object disagree")]
    MissingMap(&'static str),

    #[error("map {name}: {error}")]
    Map {
        name: &'static str,
        error: aya::maps::MapError,
    },

    #[error("program {name}: {error}")]
    Program {
        name: &'static str,
        error: Box<aya::programs::ProgramError>,
    },

    #[error("interface `{0}` does not exist in this network namespace")]
    NoSuchInterface(String),

    #[error("cannot attach {hook} to {iface}: {error}{hint}")]
    Attach {
        iface: String,
        hook: &'static str,
        error: Box<aya::programs::ProgramError>,
        hint: &'static str,
    },

    #[error("pin directory {path}: {error}")]
    PinDir { path: PathBuf, error: io::Error },

    #[error(
        "{path} is not on a bpf filesystem and mounting one failed ({error}); \
         mount it with `mount -t bpf bpf /sys/fs/bpf` or choose another --pin-dir"
    )]
    Bpffs { path: PathBuf, error: io::Error },

    #[error("pinning {what} at {path}: {error}")]
    Pin {
        what: String,
        path: PathBuf,
        error: aya::pin::PinError,
    },

    #[error("{what} is not a bpf_link and cannot be pinned: {error}")]
    NotPinnable {
        what: String,
        error: aya::programs::links::LinkError,
    },

    #[error(
        "{family} allowlist needs {needed} entries but the trie holds {max}: \
         raise limits.allow_entries"
    )]
    AllowlistFull {
        family: &'static str,
        needed: usize,
        max: u32,
    },

    #[error("more than {max} groups: the kernel tables have room for {max}")]
    TooManyGroups { max: usize },
}

impl From<aya::EbpfError> for DatapathError {
    fn from(e: aya::EbpfError) -> Self {
        // Boxed: EbpfError is large, and every datapath call returns this error type.
        DatapathError::Load(Box::new(e))
    }
}

pub type Result<T, E = DatapathError> = std::result::Result<T, E>;
