//! Runs the examples, so that they keep working.

mod common;

#[path = "../examples/quickstart.rs"]
mod quickstart;

#[test]
fn quickstart_example_runs() {
    // SAFETY of set_var: this test binary runs only this one test.
    unsafe { std::env::set_var("DFA_DATA", common::data_dir()) };
    quickstart::main().unwrap();
}
