//! Kernels and one training step (`cargo bench`). Whole-epoch throughput beside the GEMM peak
//! is `dfa bench`.

use criterion::{Criterion, criterion_group, criterion_main};
use dfa::base::linalg::gemm_nt;
use dfa::experiments::bench::synthetic;
use dfa::layers::activation::Activation;
use dfa::rules::Rule;
use dfa::train::Trainer;
use dfa::train::config::TrainConfig;
use std::hint::black_box;

fn gemm(c: &mut Criterion) {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for (m, k, n) in [(64, 784, 800), (64, 800, 800), (800, 64, 784), (64, 240, 240)] {
            let a = vec![0.5f32; m * k];
            let b = vec![0.25f32; n * k];
            let mut out = vec![0.0f32; m * n];
            c.bench_function(&format!("gemm_nt {m}x{k}x{n} {threads} threads"), |bench| {
                pool.install(|| bench.iter(|| gemm_nt(black_box(&mut out), &a, &b, (m, k, n), false, threads)))
            });
        }
    }
}

fn element_wise(c: &mut Criterion) {
    let mut h = vec![0.3f32; 64 * 800];
    let bias = vec![0.1f32; 800];
    c.bench_function("bias + tanh 64x800", |b| b.iter(|| Activation::Tanh.bias_apply(black_box(&mut h), &bias)));
    let mut d = vec![0.2f32; 64 * 800];
    c.bench_function("⊙ tanh' 64x800", |b| b.iter(|| Activation::Tanh.scale_by_derivative(black_box(&mut d), &h)));
}

fn training_step(c: &mut Criterion) {
    let data = synthetic(64 * 20, 784, 1);
    for rule in [Rule::BP, Rule::DFA] {
        for threads in [1, 2] {
            let config = TrainConfig { rule, model: "2x800".into(), threads, ..Default::default() };
            let mut t = Trainer::new(config, &data).unwrap();
            let idx: Vec<u32> = (0..64).collect();
            c.bench_function(&format!("step 2x800 {} {threads} threads", rule.name()), |b| {
                t.in_pool(|t| b.iter(|| t.train_batch(black_box(&idx))));
            });
        }
    }
}

criterion_group!(benches, gemm, element_wise, training_step);
criterion_main!(benches);
