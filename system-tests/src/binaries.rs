//! The services' executables, as cargo built them: in the target directory
//! the running executable comes from (a test, `target/debug/deps/faults-<hash>`,
//! or the soak, `target/release/soak`, → `target/<profile>/<name>`).
//! `make test-rust` builds them first (`cargo build --workspace --bins`), so
//! the tests never run stale ones.

use std::path::{Path, PathBuf};

/// The path of the binary `name`; panics, saying how to build it, when it is missing.
pub fn path(name: &str) -> PathBuf {
    let binary = profile_dir().join(name);
    assert!(
        binary.is_file(),
        "{} is missing: build the services first with `cargo build --workspace --bins` \
         (`make test-rust` does)",
        binary.display()
    );
    binary
}

/// The target directory (`target/`), where the tests leave their reports.
pub fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .map(Path::to_path_buf)
        .expect("target/<profile> has a parent")
}

/// `target/<profile>`: binaries run from it, tests from its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the executable has a path");
    let dir = exe.parent().expect("the executable is in a directory");
    let dir = if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().expect("deps/ is in target/<profile>")
    } else {
        dir
    };
    dir.to_path_buf()
}
