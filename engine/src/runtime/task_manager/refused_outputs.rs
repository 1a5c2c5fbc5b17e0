//! Outputs the broker refused for good after they were sent (a delivery report's error, such as
//! MESSAGE_TOO_LARGE for a topic's `max.message.bytes`), remembered across the abort they cause
//! so that the production exception handler decides on them when their transaction is redone —
//! rather than the thread aborting and redoing the same transaction for ever.
//!
//! A broker refuses a whole batch, so a delivery report names every record that shared the
//! batch with the one at fault. The ledger finds it in three steps:
//!
//! 1. A transaction fails on refused deliveries and aborts. Each refused output becomes a
//!    *suspect* ([`RefusedOutputs::note_aborted`]).
//! 2. Redone, a suspect is sent alone: the records before it are acknowledged first, then it is
//!    ([`Verdict::SendAlone`]). Delivered, it was only a batch-mate and is no longer suspected;
//!    refused, it is *confirmed* (it was sent alone), and the transaction aborts again.
//! 3. Redone again, a confirmed output goes to the production exception handler, as an output
//!    the producer refuses at `send` does ([`Verdict::Refused`]): `log_and_continue`
//!    dead-letters it and the rest commits.
//!
//! The thread stops instead under `log_and_fail` (at step 1: something was refused), and after
//! [`MAX_ROUNDS`] refused transactions without a commit between: outputs that differ each time
//! they are redone never match, and a change of a store or a dead letter cannot be skipped, only
//! redone (a refusal that passes, as a one-off broker fault, then commits).

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::types::RDKafkaErrorCode;

use crate::runtime::streams_producer::RefusedDelivery;
use crate::ExceptionHandler;

/// Transactions in a row that may fail on refused outputs before the thread stops.
pub(crate) const MAX_ROUNDS: u32 = 8;

/// At most this many suspects and confirmed refusals are kept (beyond, they are forgotten and
/// found again, two rounds each).
const MAX_KEPT: usize = 100_000;

/// How to send an output, given what was refused before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Send,
    SendAlone,
    /// The broker refused it when it was sent alone: the production exception handler decides.
    Refused(RDKafkaErrorCode),
}

/// The thread's refused outputs (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct RefusedOutputs {
    suspects: BTreeSet<u64>,
    confirmed: BTreeMap<u64, RDKafkaErrorCode>,
    /// Suspects sent alone in the open transaction.
    sent_alone: BTreeSet<u64>,
    /// Transactions aborted on refusals since the last commit.
    rounds: u32,
}

impl RefusedOutputs {
    /// How to send the output with [`fingerprint`](crate::runtime::streams_producer::fingerprint)
    /// `fingerprint`.
    pub fn verdict(&self, fingerprint: u64) -> Verdict {
        if let Some(code) = self.confirmed.get(&fingerprint) {
            Verdict::Refused(*code)
        } else if self.suspects.contains(&fingerprint) {
            Verdict::SendAlone
        } else {
            Verdict::Send
        }
    }

    /// A suspect is being sent alone: a refusal of it now confirms it.
    pub fn sending_alone(&mut self, fingerprint: u64) {
        self.sent_alone.insert(fingerprint);
    }

    /// A suspect sent alone was delivered: it was only in a refused batch.
    pub fn delivered_alone(&mut self, fingerprint: u64) {
        self.suspects.remove(&fingerprint);
        self.sent_alone.remove(&fingerprint);
    }

    /// A transaction committed.
    pub fn committed(&mut self) {
        self.rounds = 0;
        self.sent_alone.clear();
    }

    /// A transaction aborted, with `refused` the deliveries refused for good in it;
    /// `is_output(topic)` says whether a topic is a sink or repartition topic (whose records
    /// the handler may skip). `Err` says why the thread must stop.
    pub fn note_aborted(
        &mut self,
        refused: Vec<RefusedDelivery>,
        handler: ExceptionHandler,
        is_output: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let sent_alone = std::mem::take(&mut self.sent_alone);
        if refused.is_empty() {
            return Ok(());
        }
        self.rounds += 1;
        for r in &refused {
            let what = format!(
                "the broker refuses the output to `{}` ({} bytes): {:?}",
                r.topic, r.bytes, r.code
            );
            if !is_output(&r.topic) {
                // It cannot be skipped, only redone: a refusal that lasts stops the thread.
                if self.rounds > MAX_ROUNDS {
                    return Err(format!(
                        "{what} in {} transactions in a row; a change of a store or a dead \
                         letter cannot be skipped",
                        self.rounds
                    ));
                }
                continue;
            }
            if handler == ExceptionHandler::LogAndFail {
                return Err(format!(
                    "{what} (production.exception.handler=log_and_fail)"
                ));
            }
            if sent_alone.contains(&r.fingerprint) {
                tracing::warn!("{what}: sent alone, so it goes to the production exception handler when its transaction is redone");
                self.suspects.remove(&r.fingerprint);
                if self.confirmed.len() >= MAX_KEPT {
                    self.confirmed.clear();
                }
                self.confirmed.insert(r.fingerprint, r.code);
            } else {
                if self.suspects.len() >= MAX_KEPT {
                    self.suspects.clear();
                }
                self.suspects.insert(r.fingerprint);
            }
        }
        if self.rounds > MAX_ROUNDS {
            return Err(format!(
                "the broker refused outputs in {} transactions in a row (the last: {} of `{}`, {:?}); \
                 outputs that differ each time their transaction is redone cannot be told apart",
                self.rounds,
                refused.len(),
                refused[0].topic,
                refused[0].code
            ));
        }
        tracing::warn!(
            refused = refused.len(),
            "the broker refused outputs of the aborted transaction: each is sent alone when it is redone"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(topic: &str, fingerprint: u64) -> RefusedDelivery {
        RefusedDelivery {
            topic: topic.into(),
            fingerprint,
            bytes: 10,
            code: RDKafkaErrorCode::MessageSizeTooLarge,
        }
    }

    fn outputs(topic: &str) -> bool {
        topic == "out"
    }

    /// Three records share a refused batch; only the second is refused alone.
    #[test]
    fn the_refused_record_is_found_by_sending_each_suspect_alone() {
        let mut ledger = RefusedOutputs::default();
        let batch: Vec<_> = (1..=3).map(|f| refused("out", f)).collect();
        let continuing = ExceptionHandler::LogAndContinue;
        assert_eq!(ledger.note_aborted(batch, continuing, outputs), Ok(()));
        assert!((1..=3).all(|f| ledger.verdict(f) == Verdict::SendAlone));
        assert_eq!(ledger.verdict(4), Verdict::Send);

        // Redone: 1 is delivered alone, 2 is refused alone (and the transaction aborts).
        ledger.sending_alone(1);
        ledger.delivered_alone(1);
        ledger.sending_alone(2);
        assert_eq!(
            ledger.note_aborted(vec![refused("out", 2)], continuing, outputs),
            Ok(())
        );
        assert_eq!(ledger.verdict(1), Verdict::Send);
        assert_eq!(
            ledger.verdict(2),
            Verdict::Refused(RDKafkaErrorCode::MessageSizeTooLarge)
        );
        assert_eq!(ledger.verdict(3), Verdict::SendAlone);
        ledger.committed();
        assert_eq!(ledger.rounds, 0);
    }

    #[test]
    fn a_lasting_refused_change_or_log_and_fail_stops_the_thread() {
        let mut ledger = RefusedOutputs::default();
        let change = || vec![refused("app-store-changelog", 1)];
        let continuing = ExceptionHandler::LogAndContinue;
        for _ in 0..MAX_ROUNDS {
            assert_eq!(ledger.note_aborted(change(), continuing, outputs), Ok(()));
        }
        assert_eq!(
            ledger.verdict(1),
            Verdict::Send,
            "a change is redone, not suspected"
        );
        let stop = ledger
            .note_aborted(change(), continuing, outputs)
            .unwrap_err();
        assert!(stop.contains("cannot be skipped"), "{stop}");
        ledger.committed();
        let stop = ledger
            .note_aborted(
                vec![refused("out", 1)],
                ExceptionHandler::LogAndFail,
                outputs,
            )
            .unwrap_err();
        assert!(
            stop.contains("log_and_fail") && stop.contains("`out`"),
            "{stop}"
        );
        assert_eq!(
            ledger.note_aborted(Vec::new(), ExceptionHandler::LogAndFail, outputs),
            Ok(()),
            "an abort without refusals is no refusal"
        );
    }

    /// Outputs that change every time (a wall-clock value, say) are never confirmed: the
    /// thread stops after MAX_ROUNDS instead of aborting for ever.
    #[test]
    fn refusals_that_never_repeat_stop_the_thread_after_max_rounds() {
        let mut ledger = RefusedOutputs::default();
        let continuing = ExceptionHandler::LogAndContinue;
        for round in 0..MAX_ROUNDS {
            let fresh = vec![refused("out", u64::from(round))];
            assert_eq!(ledger.note_aborted(fresh, continuing, outputs), Ok(()));
        }
        let stop = ledger
            .note_aborted(vec![refused("out", 99)], continuing, outputs)
            .unwrap_err();
        assert!(stop.contains("in a row"), "{stop}");
    }
}
