//! Records the git commit the binary was built from (`DFA_GIT_COMMIT`), for run records.

fn main() {
    let commit = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DFA_GIT_COMMIT={commit}");
    // a new commit or staged change, and any edit of what the binary is built from: an edit of
    // a source file leaves .git/index alone, and without these lines a build of an edited tree
    // would keep the clean commit of the last build script run
    for path in [".git/HEAD", ".git/index", "src", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
