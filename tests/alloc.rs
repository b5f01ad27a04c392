//! The steady-state training step allocates nothing (a counting global allocator proves it).
//! One test in this binary, so that no other test allocates while it counts. Only the threads of
//! the trainer's pool count (flagged by a broadcast): the pools of earlier trainers shut their
//! threads down in the background, and their exit allocates.

mod common;

use dfa::data::{self, DatasetKind};
use dfa::layers::activation::Activation;
use dfa::optim::OptimiserKind;
use dfa::rules::Rule;
use dfa::train::config::{ConvAlgo, TrainConfig};
use dfa::train::{Trainer, apply_subsets};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations count (no destructor, so no allocation of its own).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_training_step_allocates_nothing() {
    let data = data::load(DatasetKind::Mnist, &common::data_dir()).unwrap();
    let mut failures = Vec::new();
    for &rule in Rule::all() {
        for threads in [1, 2] {
            for (model, optimiser, conv_algo) in [
                ("2x256", OptimiserKind::Rmsprop, ConvAlgo::Im2col),
                ("5x64", OptimiserKind::Sgd, ConvAlgo::Im2col),
                // deep and narrow: BP and FA on two threads run the chain beside the updates
                ("10x200", OptimiserKind::Rmsprop, ConvAlgo::Im2col),
                // every rule pipelines the steps of nets this deep
                ("18x32", OptimiserKind::Rmsprop, ConvAlgo::Im2col),
                ("c4k3p1,p3s2,c4k3,16", OptimiserKind::Rmsprop, ConvAlgo::Im2col),
                // the second block by Winograd F(4, 3)
                ("c4k3p1,p3s2,c4k3,16", OptimiserKind::Rmsprop, ConvAlgo::Winograd4),
            ] {
                if !rule.per_layer() && model.starts_with('c') {
                    continue; // whole-network rules (IFA) are refused on conv nets
                }
                let config = TrainConfig {
                    rule,
                    model: model.into(),
                    activation: Activation::Tanh,
                    optimiser,
                    conv_algo,
                    learning_rate: 1e-4,
                    threads,
                    train_subset: Some(1000),
                    test_subset: Some(100),
                    ..Default::default()
                };
                let data = apply_subsets(data.clone(), &config);
                let mut t = Trainer::new(config, &data).unwrap();
                let batches: Vec<Vec<u32>> = (0..15).map(|b| (b * 64..b * 64 + 64).collect()).collect();
                let last: Vec<u32> = (960..1000).collect(); // a short last batch, as at an epoch's end
                let counted = t.in_pool(|t| {
                    t.train_batches(batches[..3].iter().chain([&last]).map(|b| b.as_slice()), &mut |_, _, _, _| true);
                    rayon::broadcast(|_| COUNTED.with(|c| c.set(true)));
                    let before = ALLOCATIONS.load(Ordering::SeqCst);
                    // through `train_batches`, as an epoch trains (pipelined steps on deep nets)
                    t.train_batches(batches[3..].iter().chain([&last]).map(|b| b.as_slice()), &mut |_, _, _, _| true);
                    let counted = ALLOCATIONS.load(Ordering::SeqCst) - before;
                    rayon::broadcast(|_| COUNTED.with(|c| c.set(false)));
                    counted
                });
                if counted != 0 {
                    failures.push(format!(
                        "{rule:?} {model} {conv_algo:?} {threads} threads: {counted} allocations in 13 steps"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
