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
//!    ([`Verdict::SendAlone`]). Delivered, it was only a batch-mate: it is still sent alone
//!    until a transaction commits (back in a batch, it could share a refused batch again);
//!    refused, it is *confirmed* (it was sent alone), and the transaction aborts again.
//! 3. Redone again, a confirmed output goes to the production exception handler, as an output
//!    the producer refuses at `send` does ([`Verdict::Refused`]): `log_and_continue`
//!    dead-letters it and the rest commits.
//!
//! 4. The transaction that handed a confirmed output to the handler commits: the output is
//!    forgotten ([`RefusedOutputs::committed`]), so the same record produced later (after the
//!    topic's limit was raised, say) is sent again rather than dead-lettered unsent.
//!
//! The thread stops instead under `log_and_fail` (at step 1: something was refused), at once
//! when the broker does not authorize the write (every record of the topic is refused), and after
//! [`MAX_ROUNDS`] refused transactions in a row that confirmed nothing: outputs that differ each time they are redone never match, and a change of a
//! store or a dead letter cannot be skipped, only redone (a refusal that passes, as a one-off
//! broker fault, then commits). A round that finds a refused output is progress, so a
//! transaction with many oversized outputs is redone until all are found. A transaction's abort
//! may be noted more than once (late delivery reports): it counts as one round.

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::types::RDKafkaErrorCode;

use crate::runtime::streams_producer::{unauthorized, RefusedDelivery};
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
    /// Confirmed refusals handed to the handler in the open transaction (forgotten once it
    /// commits).
    handled: BTreeSet<u64>,
    /// Suspects delivered alone: still sent alone until a transaction commits (sent in a batch
    /// again, they could share a refused batch again and be found again, for ever).
    cleared: BTreeSet<u64>,
    /// Suspects sent alone in the open transaction.
    sent_alone: BTreeSet<u64>,
    /// A transaction is open: records were sent since the last commit or abort.
    open: bool,
    /// The last transaction's refusals were already counted as a round.
    counted: bool,
    /// The open transaction confirmed a suspect.
    progressed: bool,
    /// Transactions aborted on refusals in a row without progress or a commit.
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

    /// A suspect sent alone was delivered: it was only in a refused batch (it is forgotten
    /// when a transaction commits).
    pub fn delivered_alone(&mut self, fingerprint: u64) {
        self.sent_alone.remove(&fingerprint);
        if self.cleared.len() < MAX_KEPT {
            self.cleared.insert(fingerprint);
        }
    }

    /// A confirmed refusal went to the production exception handler in the open transaction.
    pub fn handled(&mut self, fingerprint: u64) {
        self.handled.insert(fingerprint);
    }

    /// A record is about to be sent: the first since a commit or abort begins a transaction
    /// (under at_least_once too, where a commit interval plays its part).
    pub fn transaction_started(&mut self) {
        if std::mem::replace(&mut self.open, true) {
            return;
        }

        self.sent_alone.clear();
        self.handled.clear();
        self.counted = false;
        self.progressed = false;
    }

    /// A transaction committed: what it handed to the handler is done with.
    pub fn committed(&mut self) {
        if !self.open {
            // Nothing was sent since the last commit or abort: a commit of offsets alone is
            // no redone transaction getting through.
            return;
        }
        for fingerprint in std::mem::take(&mut self.handled) {
            self.confirmed.remove(&fingerprint);
        }
        for fingerprint in std::mem::take(&mut self.cleared) {
            self.suspects.remove(&fingerprint);
        }
        self.sent_alone.clear();
        self.rounds = 0;
        self.open = false;
        self.counted = false;
        self.progressed = false;
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
        // Late delivery reports of the same abort are noted again before anything is sent.
        self.open = false;
        // What the aborted transaction dead-lettered is dead-lettered again when it is redone.
        self.handled.clear();
        if refused.is_empty() {
            return Ok(());
        }
        if let Some(r) = refused.iter().find(|r| unauthorized(r.code)) {
            return Err(format!(
                "the broker refuses every write to `{}`: {:?} (the application is not \
                 authorized to write there; no production exception handler skips that)",
                r.topic, r.code
            ));
        }
        if !self.counted {
            self.rounds += 1;
            self.counted = true;
        }
        // A change of a store or a dead letter cannot be skipped, only redone: the last one
        // refused names the stop if the refusals last.
        let mut unskippable = None;
        for r in &refused {
            let what = format!(
                "the broker refuses the output to `{}` ({} bytes): {:?}",
                r.topic, r.bytes, r.code
            );
            if !is_output(&r.topic) {
                unskippable = Some(what);
                continue;
            }
            if handler == ExceptionHandler::LogAndFail {
                return Err(format!(
                    "{what} (production.exception.handler=log_and_fail)"
                ));
            }
            if self.sent_alone.contains(&r.fingerprint) {
                tracing::warn!("{what}: sent alone, so it goes to the production exception handler when its transaction is redone");
                self.progressed = true;
                self.suspects.remove(&r.fingerprint);
                self.cleared.remove(&r.fingerprint);
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
        if self.progressed {
            self.rounds = 0;
        }
        if self.rounds > MAX_ROUNDS {
            if let Some(what) = unskippable {
                return Err(format!(
                    "{what} in {} transactions in a row; a change of a store or a dead \
                     letter cannot be skipped",
                    self.rounds
                ));
            }
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
        ledger.transaction_started();
        ledger.sending_alone(1);
        ledger.delivered_alone(1);
        ledger.sending_alone(2);
        assert_eq!(
            ledger.note_aborted(vec![refused("out", 2)], continuing, outputs),
            Ok(())
        );
        assert_eq!(
            ledger.verdict(1),
            Verdict::SendAlone,
            "alone until a commit"
        );
        assert_eq!(
            ledger.verdict(2),
            Verdict::Refused(RDKafkaErrorCode::MessageSizeTooLarge)
        );
        assert_eq!(ledger.verdict(3), Verdict::SendAlone);
        // Redone: 1 and 3 delivered alone, 2 dead-lettered; it commits.
        ledger.transaction_started();
        ledger.sending_alone(1);
        ledger.delivered_alone(1);
        ledger.handled(2);
        ledger.sending_alone(3);
        ledger.delivered_alone(3);
        ledger.committed();
        assert_eq!(ledger.rounds, 0);
        assert!((1..=3).all(|f| ledger.verdict(f) == Verdict::Send));
    }

    #[test]
    fn a_lasting_refused_change_or_log_and_fail_stops_the_thread() {
        let mut ledger = RefusedOutputs::default();
        let change = || vec![refused("app-store-changelog", 1)];
        let continuing = ExceptionHandler::LogAndContinue;
        for _ in 0..MAX_ROUNDS {
            ledger.transaction_started();
            assert_eq!(ledger.note_aborted(change(), continuing, outputs), Ok(()));
        }
        ledger.transaction_started();
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
            ledger.transaction_started();
            let fresh = vec![refused("out", u64::from(round))];
            assert_eq!(ledger.note_aborted(fresh, continuing, outputs), Ok(()));
        }
        ledger.transaction_started();
        let stop = ledger
            .note_aborted(vec![refused("out", 99)], continuing, outputs)
            .unwrap_err();
        assert!(stop.contains("in a row"), "{stop}");
    }

    #[test]
    fn a_write_the_broker_does_not_authorize_stops_the_thread_at_once() {
        let mut ledger = RefusedOutputs::default();
        ledger.transaction_started();
        let mut denied = refused("out", 1);
        denied.code = RDKafkaErrorCode::TopicAuthorizationFailed;
        let stop = ledger
            .note_aborted(
                vec![refused("out", 2), denied],
                ExceptionHandler::LogAndContinue,
                outputs,
            )
            .unwrap_err();
        assert!(
            stop.contains("`out`") && stop.contains("not authorized"),
            "{stop}"
        );
    }

    /// Once the transaction that dead-lettered an output commits, the same output produced
    /// later is sent again (the topic's limit may have been raised), not dead-lettered unsent.
    #[test]
    fn a_handled_refusal_is_forgotten_once_its_transaction_commits() {
        let mut ledger = RefusedOutputs::default();
        let continuing = ExceptionHandler::LogAndContinue;
        ledger.transaction_started();
        assert_eq!(
            ledger.note_aborted(vec![refused("out", 7)], continuing, outputs),
            Ok(())
        );
        ledger.transaction_started();
        ledger.sending_alone(7);
        assert_eq!(
            ledger.note_aborted(vec![refused("out", 7)], continuing, outputs),
            Ok(())
        );
        ledger.transaction_started();
        assert!(matches!(ledger.verdict(7), Verdict::Refused(_)));
        ledger.handled(7);
        ledger.committed();
        assert_eq!(ledger.verdict(7), Verdict::Send);
    }

    /// A transaction is noted twice when its abort serves late delivery reports: it is one
    /// round, and the late refusal of a suspect sent alone still confirms it.
    #[test]
    fn an_abort_noted_twice_is_one_round_and_keeps_what_was_sent_alone() {
        let mut ledger = RefusedOutputs::default();
        let continuing = ExceptionHandler::LogAndContinue;
        ledger.transaction_started();
        assert_eq!(
            ledger.note_aborted(vec![refused("out", 1)], continuing, outputs),
            Ok(())
        );
        ledger.transaction_started();
        ledger.sending_alone(1);
        assert_eq!(ledger.note_aborted(Vec::new(), continuing, outputs), Ok(()));
        assert_eq!(
            ledger.note_aborted(vec![refused("out", 1)], continuing, outputs),
            Ok(())
        );
        assert!(matches!(ledger.verdict(1), Verdict::Refused(_)));
        // Nothing is found any more: MAX_ROUNDS transactions, each noted twice, pass; one more stops.
        for _ in 0..MAX_ROUNDS {
            ledger.transaction_started();
            let change = || vec![refused("app-store-changelog", 2)];
            assert_eq!(ledger.note_aborted(change(), continuing, outputs), Ok(()));
            assert_eq!(ledger.note_aborted(change(), continuing, outputs), Ok(()));
        }
        ledger.transaction_started();
        let change = vec![refused("app-store-changelog", 2)];
        assert!(ledger.note_aborted(change, continuing, outputs).is_err());
    }

    /// A batch-mate delivered alone is not progress: if its transaction is refused again
    /// without a confirmation, the round counts, so outputs that change every time they are
    /// redone still stop the thread after MAX_ROUNDS.
    #[test]
    fn records_delivered_alone_stay_alone_and_are_no_progress() {
        let mut ledger = RefusedOutputs::default();
        let continuing = ExceptionHandler::LogAndContinue;
        let fixed = 1_000;
        for round in 0..MAX_ROUNDS {
            ledger.transaction_started();
            if round > 0 {
                assert_eq!(ledger.verdict(fixed), Verdict::SendAlone);
                ledger.sending_alone(fixed);
                ledger.delivered_alone(fixed);
            }
            // A wall-clock output, different every round, in a refused batch.
            let batch = vec![refused("out", u64::from(round))];
            let batch = if round == 0 {
                [batch, vec![refused("out", fixed)]].concat()
            } else {
                batch
            };
            assert_eq!(ledger.note_aborted(batch, continuing, outputs), Ok(()));
        }
        ledger.transaction_started();
        assert!(ledger
            .note_aborted(vec![refused("out", 99)], continuing, outputs)
            .is_err());
    }

    /// An empty commit after an abort (offsets alone, nothing sent) is no transaction getting
    /// through: what was handled in the aborted one is dead-lettered again, not forgotten.
    #[test]
    fn a_commit_with_nothing_sent_forgets_nothing() {
        let mut ledger = RefusedOutputs::default();
        let continuing = ExceptionHandler::LogAndContinue;
        ledger.transaction_started();
        assert_eq!(
            ledger.note_aborted(vec![refused("out", 7)], continuing, outputs),
            Ok(())
        );
        ledger.transaction_started();
        ledger.sending_alone(7);
        assert_eq!(
            ledger.note_aborted(vec![refused("out", 7)], continuing, outputs),
            Ok(())
        );
        ledger.transaction_started();
        ledger.handled(7);
        // It aborts for another reason; an empty commit follows.
        assert_eq!(ledger.note_aborted(Vec::new(), continuing, outputs), Ok(()));
        ledger.committed();
        assert!(matches!(ledger.verdict(7), Verdict::Refused(_)));
    }

    /// Twice MAX_ROUNDS oversized outputs, each found in a round of its own: every round finds
    /// one, so the thread goes on until all are dead-lettered.
    #[test]
    fn rounds_that_find_a_refused_output_do_not_stop_the_thread() {
        let mut ledger = RefusedOutputs::default();
        let continuing = ExceptionHandler::LogAndContinue;
        let bad: Vec<u64> = (1..=u64::from(2 * MAX_ROUNDS)).collect();
        ledger.transaction_started();
        let all = bad.iter().map(|f| refused("out", *f)).collect();
        assert_eq!(ledger.note_aborted(all, continuing, outputs), Ok(()));
        for f in &bad {
            // Redone: the ones found before are dead-lettered, this one is refused alone.
            ledger.transaction_started();
            for g in bad.iter().filter(|g| *g < f) {
                assert!(matches!(ledger.verdict(*g), Verdict::Refused(_)));
                ledger.handled(*g);
            }
            assert_eq!(ledger.verdict(*f), Verdict::SendAlone);
            ledger.sending_alone(*f);
            assert_eq!(
                ledger.note_aborted(vec![refused("out", *f)], continuing, outputs),
                Ok(())
            );
        }
        ledger.transaction_started();
        assert!(bad
            .iter()
            .all(|f| matches!(ledger.verdict(*f), Verdict::Refused(_))));
        ledger.committed();
    }
}
