//! Active/passive history: every server pulls, per peer, the history rows
//! the peer's store changed since this server's mark for it, and merges
//! them by id (`Store::merge_history`); a promotion pulls from the live
//! peers first.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::sync::MergeCounts;
use ferry_proto::cluster::{ClusterRequest, ClusterResponse};

use crate::node::{lock, Node, Peer};

/// History rows per table and page.
const HISTORY_PAGE: u32 = 2_000;
/// Pages per pull at most; the next pull goes on from there.
const HISTORY_PAGES_PER_PULL: usize = 100;

impl Node {
    /// One worker per server peer, so a dead peer's timeouts never delay
    /// the merge from the others.
    pub(crate) fn start_history_pulls(self: Arc<Self>) {
        for (index, peer) in self.peers.iter().enumerate() {
            if peer.config.witness {
                continue;
            }
            let node = self.clone();
            let name = format!("history-pull-{}", peer.config.id);
            self.runner.spawn(name, |w| async move {
                let every = Duration::from_secs(3);
                let Some(peer) = node.peers.get(index) else {
                    return;
                };
                while w.sleep(every).await {
                    w.busy(format!("pulling from {}", peer.config.id));
                    let pulled = w
                        .until_stopped(tokio::time::timeout(
                            Duration::from_secs(30),
                            node.pull_history(peer),
                        ))
                        .await;
                    match pulled {
                        None => return,
                        Some(Ok(Ok((counts, _)))) => {
                            w.done_one();
                            if counts.total() > 0 {
                                (node.on_merged)(&counts);
                            }
                        }
                        Some(Ok(Err(e))) => w.error(e),
                        Some(Err(_)) => w.error("no answer in 30 s"),
                    }
                    w.idle();
                }
            });
        }
    }

    /// Pulls the transfer log, events and firings every reachable server
    /// wrote since the last pull, and merges them here by id. Returns what
    /// was merged and the peers whose history was taken to its end.
    pub(crate) async fn merge_from_peers(
        self: &Arc<Self>,
        deadline: Duration,
    ) -> (MergeCounts, Vec<String>) {
        let mut total = MergeCounts::default();
        let mut complete = Vec::new();
        // Only peers heard from lately: a dead one would only hold us up.
        let pulls = self
            .peers
            .iter()
            .filter(|p| !p.config.witness)
            .filter(|p| {
                lock(&p.contact)
                    .last_ok
                    .is_some_and(|t| t.elapsed() < self.failover())
            })
            .map(|peer| async move {
                let pulled = tokio::time::timeout(deadline, self.pull_history(peer)).await;
                (peer.config.id.clone(), pulled)
            });
        for (peer, result) in futures::future::join_all(pulls).await {
            if let Ok(Ok((counts, to_the_end))) = result {
                total.add(&counts);
                if to_the_end {
                    complete.push(peer);
                }
            }
        }
        if total.total() > 0 {
            (self.on_merged)(&total);
        }
        (total, complete)
    }

    /// Pulls the history rows `peer`'s store changed after this node's
    /// mark for it, page by page, merging each and moving the mark past it
    /// at once (a pull cut short keeps what it merged). The mark is a
    /// position in the peer's own change sequence, so no clock is compared;
    /// when the peer answers from another store (restored, reopened, new)
    /// the mark starts again from 0. True with the counts when the peer
    /// said nothing more was left.
    async fn pull_history(&self, peer: &Peer) -> Result<(MergeCounts, bool), String> {
        let mut mark = lock(&peer.contact).history.clone();
        let mut total = MergeCounts::default();
        let mut to_the_end = false;
        for _page in 0..HISTORY_PAGES_PER_PULL {
            let answer = self
                .call(
                    peer,
                    ClusterRequest::PullHistory {
                        after_seq: mark.after_seq(),
                        limit: HISTORY_PAGE,
                    },
                    Duration::from_secs(20),
                )
                .await?;
            let ClusterResponse::History(mut page) = answer else {
                return Err(format!(
                    "{}: unexpected answer to PullHistory",
                    peer.config.id
                ));
            };
            if !mark.accepts(&page) {
                tracing::info!(
                    peer = %peer.config.id,
                    "the peer's store is another one than last time: pulling its history from the start"
                );
                lock(&peer.contact).history = mark.clone();
                continue;
            }
            let tables = std::mem::take(&mut page.tables);
            let store = self.store.clone();
            let counts = tokio::task::spawn_blocking(move || store.merge_history(&tables))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("merging history from {}: {e}", peer.config.id))?;
            total.add(&counts);
            mark.advance(&page);
            lock(&peer.contact).history = mark.clone();
            if !page.more {
                to_the_end = true;
                break;
            }
        }
        if total.total() > 0 {
            tracing::info!(
                peer = %peer.config.id,
                transfers = total.transfers,
                events = total.events,
                attempts = total.attempts,
                firings = total.firings,
                "merged history from a peer"
            );
        }
        Ok((total, to_the_end))
    }
}
