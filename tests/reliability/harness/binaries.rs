//! Builds the example binaries once (a no-op when fresh) and finds them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the example binaries.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) server: PathBuf,
    pub(crate) worker: PathBuf,
    /// The command-line client (tests/cli.rs).
    pub(crate) onboard: PathBuf,
}

fn target_profile_dir() -> PathBuf {
    // <target>/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Builds the examples with every feature (once per test binary; a no-op
/// when they are fresh) and returns their paths.
pub(crate) fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let profile_dir = target_profile_dir();
        let target = profile_dir.parent().expect("target dir").to_path_buf();
        let bins = Binaries {
            server: profile_dir.join("examples/server"),
            worker: profile_dir.join("examples/worker"),
            onboard: profile_dir.join("examples/onboard"),
        };
        if std::env::var_os("RELIABILITY_NO_BUILD").is_none() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let mut cmd = Command::new(cargo);
            // What `cargo test` sets for a test (CARGO_PKG_*, CARGO_MANIFEST_DIR, …)
            // would make the build differ from a plain one and rebuild.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy().into_owned();
                if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "OUT_DIR" {
                    cmd.env_remove(&key);
                }
            }
            cmd.current_dir(root)
                .args(["build", "--workspace", "--examples", "--all-features"])
                .env("CARGO_TARGET_DIR", &target);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("cargo build --examples");
            assert!(status.success(), "building the examples failed");
        }
        assert!(
            bins.server.exists() && bins.worker.exists() && bins.onboard.exists(),
            "examples not found under {}",
            profile_dir.display()
        );
        bins
    })
}
