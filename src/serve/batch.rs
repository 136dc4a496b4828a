//! Dynamic batching: concurrent small requests to a model with a free batch dimension are
//! joined along it into one run and the outputs split back, each request getting its own rows.
//!
//! One task per model takes the first waiting request, waits for a free session (so requests
//! pile up while every session is busy), then gathers more until `max_batch` rows or
//! `delay` after the first, whichever comes first. A request that would overflow the batch
//! starts the next one. If the model's outputs do not have the batch's rows, each request is
//! run alone instead.

use super::metrics::Metrics;
use super::model::{Model, Permit};
use super::tensor::{Data, Tensor};
use super::ServeError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Vec<Tensor>, ServeError>>;

struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    reply: Reply,
}

/// The queue into a model's batcher.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    pub fn start(
        model: Arc<Model>,
        max_batch: usize,
        delay: Duration,
        metrics: Arc<Metrics>,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(gather(model, rx, max_batch, delay, metrics));
        Batcher { tx }
    }

    /// Queue checked inputs of `rows` rows; their outputs.
    pub async fn run(&self, inputs: Vec<Tensor>, rows: usize) -> Result<Vec<Tensor>, ServeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                inputs,
                rows,
                reply,
            })
            .await
            .map_err(|_| ServeError::Unavailable("the server is shutting down".into()))?;
        rx.await
            .map_err(|_| ServeError::Internal("the batch was dropped".into()))?
    }
}

async fn gather(
    model: Arc<Model>,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    delay: Duration,
    metrics: Arc<Metrics>,
) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let permit = match model.permit().await {
            Ok(p) => p,
            Err(e) => {
                let _ = first.reply.send(Err(e));
                continue;
            }
        };
        let deadline = tokio::time::Instant::now() + delay;
        let mut rows = first.rows;
        let mut jobs = vec![first];
        while rows < max_batch {
            // With no delay, only what is queued already: no timer (tokio's timers tick in
            // milliseconds, and an expired one still waits for the next tick: +1 ms a request).
            let next = if delay.is_zero() {
                Ok(rx.try_recv().ok())
            } else {
                tokio::time::timeout_at(deadline, rx.recv()).await
            };
            match next {
                Ok(Some(j)) if rows + j.rows > max_batch => {
                    pending = Some(j);
                    break;
                }
                Ok(Some(j)) => {
                    rows += j.rows;
                    jobs.push(j);
                }
                _ => break,
            }
        }
        metrics.batch(&model.name, rows);
        let model = model.clone();
        tokio::spawn(run_batch(model, permit, jobs, rows));
    }
}

async fn run_batch(model: Arc<Model>, permit: Permit, mut jobs: Vec<Job>, rows: usize) {
    if jobs.len() == 1 {
        let j = jobs.pop().expect("one job");
        let _ = j.reply.send(model.run_on(permit, j.inputs).await);
        return;
    }
    let merged = match join(&model, &mut jobs, rows) {
        Ok(m) => m,
        Err(e) => {
            for j in jobs {
                let _ = j.reply.send(Err(ServeError::Internal(e.clone())));
            }
            return;
        }
    };
    let result = model.run_on(permit, merged).await;
    let lens: Vec<usize> = jobs.iter().map(|j| j.rows).collect();
    match result.map(|outs| split(outs, &lens, rows)) {
        Ok(Some(parts)) => {
            for (j, outs) in jobs.into_iter().zip(parts) {
                let _ = j.reply.send(Ok(outs));
            }
        }
        Ok(None) => {
            // The outputs do not follow the batch dimension: run each request alone.
            tracing::debug!(
                "model {}: outputs not batched by rows; running alone",
                model.name
            );
            for j in jobs {
                let m = model.clone();
                tokio::spawn(async move {
                    let _ = j.reply.send(m.run(j.inputs).await);
                });
            }
        }
        Err(e) => {
            for j in jobs {
                let _ = j.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Join the jobs' inputs (in the model's input order) along the first dimension.
fn join(model: &Model, jobs: &mut [Job], rows: usize) -> Result<Vec<Tensor>, String> {
    let mut out = Vec::with_capacity(model.inputs.len());
    for spec in &model.inputs {
        let mut parts = Vec::with_capacity(jobs.len());
        let mut shape = None;
        for j in jobs.iter_mut() {
            let i = j
                .inputs
                .iter()
                .position(|t| t.name == spec.name)
                .ok_or_else(|| format!("input {:?} missing from a batched request", spec.name))?;
            let t = j.inputs.swap_remove(i);
            shape.get_or_insert_with(|| t.shape.clone());
            parts.push(t.data);
        }
        let mut shape = shape.ok_or("no request in the batch")?;
        shape[0] = rows;
        out.push(Tensor {
            name: spec.name.clone(),
            shape,
            data: Data::concat(parts)?,
        });
    }
    Ok(out)
}

/// Split every output by rows: None when an output does not have `rows` rows.
fn split(outs: Vec<Tensor>, lens: &[usize], rows: usize) -> Option<Vec<Vec<Tensor>>> {
    let mut per_job: Vec<Vec<Tensor>> = lens.iter().map(|_| Vec::new()).collect();
    for t in outs {
        if t.shape.first() != Some(&rows) {
            return None;
        }
        let row_len: usize = t.shape[1..].iter().product();
        let sizes: Vec<usize> = lens.iter().map(|r| r * row_len).collect();
        let parts = t.data.split(&sizes).ok()?;
        for ((job, data), r) in per_job.iter_mut().zip(parts).zip(lens) {
            let mut shape = t.shape.clone();
            shape[0] = *r;
            job.push(Tensor {
                name: t.name.clone(),
                shape,
                data,
            });
        }
    }
    Some(per_job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_gives_each_its_rows() {
        let outs = vec![
            Tensor {
                name: "p".into(),
                shape: vec![3, 2],
                data: Data::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            },
            Tensor {
                name: "l".into(),
                shape: vec![3],
                data: Data::I64(vec![7, 8, 9]),
            },
        ];
        let parts = split(outs.clone(), &[1, 2], 3).unwrap();
        assert_eq!(parts[0][0].data, Data::F32(vec![1.0, 2.0]));
        assert_eq!(parts[0][0].shape, vec![1, 2]);
        assert_eq!(parts[1][0].data, Data::F32(vec![3.0, 4.0, 5.0, 6.0]));
        assert_eq!(parts[1][1].data, Data::I64(vec![8, 9]));
        assert_eq!(parts[1][1].shape, vec![2]);
        // An output without the batch's rows: not splittable.
        assert!(split(outs, &[1, 1], 2).is_none());
    }
}
