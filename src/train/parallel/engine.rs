//! The engine: the threads of a run and the schedules they follow, behind a small interface.

use super::overlap;
use super::pipeline::{self, Buffers, Loader};
use super::plan::Plan;
use super::pool::Pool;
use super::updates::{self, Batch, Learner, Mode};
use crate::base::error::Result;
use crate::layers::Network;

/// The threads of a run and the schedules they follow, fixed when the run starts.
pub struct Engine {
    pool: Pool,
    /// Pipelined steps ([`pipeline::pipelines`]): the buffers of the next mini-batch.
    ahead: Option<pipeline::Ahead>,
    /// Whether BP/FA run their chain beside the updates ([`overlap::overlaps_chain`]).
    chain_overlap: bool,
}

impl Engine {
    /// An engine of `threads` threads for `net` under `plan`, with mini-batches of up to `rows`
    /// samples of `dim` values.
    pub fn new(threads: usize, plan: &Plan, net: &Network, rows: usize, dim: usize) -> Result<Self> {
        let pool = Pool::new(threads)?;
        // the Winograd weight gradients' per-thread scratch, sized now: an update may run on any
        // thread of the pool, and the steps must not allocate
        let scratch = net.layers.iter().filter_map(|l| l.block.map(|b| b.weight_scratch_len(rows))).max().unwrap_or(0);
        if scratch > 0 {
            pool.broadcast(|| crate::layers::conv::reserve_weight_scratch(scratch));
        }
        let ahead = pipeline::pipelines(plan, net, threads).then(|| pipeline::Ahead::new(net, rows, dim));
        let chain_overlap = overlap::overlaps_chain(plan, net, threads);
        Ok(Engine { pool, ahead, chain_overlap })
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The run's pool (a handle sharing its threads).
    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// Whether the steps are pipelined ([`Engine::train_pipelined`]).
    pub fn pipelines(&self) -> bool {
        self.ahead.is_some()
    }

    /// The update of every layer from the directions in the batch's workspace ([`Mode`]).
    pub fn update(&self, mut learner: Learner<'_>, batch: Batch<'_>, mode: Mode) {
        updates::update_layers(&mut learner, batch, mode, self.threads());
    }

    /// The hidden directions and the update of every layer, the chain overlapped with the
    /// updates where that pays (one chain rule on two threads; [`overlap::overlaps_chain`]).
    /// Returns false, having done nothing, where it does not.
    pub fn chain_and_update(&self, mut learner: Learner<'_>, batch: Batch<'_>) -> bool {
        let Some(rule) = learner.rules.chain().filter(|_| self.chain_overlap) else { return false };
        overlap::chain_and_update(rule, &mut learner, batch);
        true
    }

    /// Trains on `batches` in order, pipelined ([`pipeline::train_pipelined`]); only when
    /// [`Engine::pipelines`].
    pub fn train_pipelined<'b>(
        &mut self,
        mut learner: Learner<'_>,
        buffers: Buffers<'_>,
        batches: impl Iterator<Item = &'b [u32]>,
        load: Loader<'_>,
        record: &mut dyn FnMut(usize, usize, f64, usize) -> bool,
    ) {
        let threads = self.threads();
        let ahead = self.ahead.as_mut().expect("a pipelined run");
        pipeline::train_pipelined((ahead, threads), &mut learner, buffers, batches, load, record);
    }
}
