//! Nexmark q0, q1, q2, q3, q5, q7 and q8 as Eddy topologies over the `nexmark` crate's event
//! generator, run through the test driver (broker-free). Events go to `person`, `auction` and
//! `bid` as JSON, keyed by id (a bid by its auction), at their event time. Each query's output
//! is checked against a plain computation over the same events before its figure counts.
//!
//! q4 keeps each auction's closing price (its highest bid before it expires) as a table and
//! re-groups that table by category (`KTable::group_by`), so that a new highest bid replaces
//! the auction's old price in its category's average.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use eddy_engine::testing::TopologyTestDriver;
use eddy_engine::{
    Consumed, Grouped, Headers, JoinWindows, Materialized, Produced, Serdes, StreamsBuilder,
    StreamsConfig, TimeWindows, Topology,
};
use nexmark::config::NexmarkConfig;
use nexmark::event::{Auction, Bid, Event, Person};
use nexmark::EventGenerator;
use serde::{Deserialize, Serialize};

use crate::report::Row;

/// Generated events, typed (for the checks) and encoded (for the driver).
pub struct Events {
    pub persons: Vec<Person>,
    pub auctions: Vec<Auction>,
    pub bids: Vec<Bid>,
    /// (topic, key, JSON value, event time), in generation order.
    pub encoded: Vec<Encoded>,
}

/// `n` events of the default Nexmark mix (1 person, 3 auctions, 46 bids in 50).
pub fn generate(n: usize) -> Events {
    let mut events = Events {
        persons: Vec::new(),
        auctions: Vec::new(),
        bids: Vec::new(),
        encoded: Vec::with_capacity(n),
    };
    for event in EventGenerator::new(NexmarkConfig::default()).take(n) {
        let ts = event.timestamp() as i64;
        match event {
            Event::Person(p) => {
                let json = serde_json::to_vec(&p).expect("a person encodes");
                events
                    .encoded
                    .push(("person", p.id.to_string().into_bytes(), json, ts));
                events.persons.push(p);
            }
            Event::Auction(a) => {
                let json = serde_json::to_vec(&a).expect("an auction encodes");
                events
                    .encoded
                    .push(("auction", a.id.to_string().into_bytes(), json, ts));
                events.auctions.push(a);
            }
            Event::Bid(b) => {
                let json = serde_json::to_vec(&b).expect("a bid encodes");
                events
                    .encoded
                    .push(("bid", b.auction.to_string().into_bytes(), json, ts));
                events.bids.push(b);
            }
        }
    }
    events
}

/// q1's output: a bid with its price in euros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EuroBid {
    pub auction: usize,
    pub bidder: usize,
    pub price_eur: u64,
    pub date_time: u64,
}

/// q3's and q8's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SellerAuction {
    pub name: String,
    pub city: String,
    pub state: String,
    pub auction: usize,
}

/// q5's and q7's value: (auction, count or price).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionFigure {
    pub auction: usize,
    pub figure: i64,
}

fn bids(b: &StreamsBuilder) -> eddy_engine::KStream<String, Bid> {
    b.stream(
        &["bid"],
        Consumed::with(Serdes::string(), Serdes::json::<Bid>()),
    )
}

/// q0: pass every bid through (decoded and encoded again).
pub fn q0() -> Topology {
    let b = StreamsBuilder::new();
    bids(&b).to(
        "q0",
        Produced::with(Serdes::string(), Serdes::json::<Bid>()),
    );
    b.build().expect("q0 builds")
}

/// q1: each bid's price in euros.
pub fn q1() -> Topology {
    let b = StreamsBuilder::new();
    bids(&b)
        .map_values(|bid: Bid| EuroBid {
            auction: bid.auction,
            bidder: bid.bidder,
            price_eur: bid.price as u64 * 908 / 1000,
            date_time: bid.date_time,
        })
        .to(
            "q1",
            Produced::with(Serdes::string(), Serdes::json::<EuroBid>()),
        );
    b.build().expect("q1 builds")
}

/// q2: the bids of every 123rd auction.
pub fn q2() -> Topology {
    let b = StreamsBuilder::new();
    bids(&b)
        .filter(|_, bid| bid.auction % 123 == 0)
        .map_values(|bid: Bid| AuctionFigure {
            auction: bid.auction,
            figure: bid.price as i64,
        })
        .to(
            "q2",
            Produced::with(Serdes::string(), Serdes::json::<AuctionFigure>()),
        );
    b.build().expect("q2 builds")
}

/// q3: auctions of category 10 by sellers in Oregon, Idaho or California, with the seller.
pub fn q3() -> Topology {
    let b = StreamsBuilder::new();
    let sellers = b
        .stream(
            &["person"],
            Consumed::with(Serdes::string(), Serdes::json::<Person>()),
        )
        .filter(|_, p| matches!(p.state.as_str(), "OR" | "ID" | "CA"))
        .to_table(Materialized::named("q3-sellers"));
    b.stream(
        &["auction"],
        Consumed::with(Serdes::string(), Serdes::json::<Auction>()),
    )
    .filter(|_, a| a.category == 10)
    .select_key(|_, a| a.seller.to_string())
    .repartition_with("q3-by-seller", Serdes::string(), Serdes::json::<Auction>())
    .join_table(&sellers, |a: &Auction, p: &Person| SellerAuction {
        name: p.name.clone(),
        city: p.city.clone(),
        state: p.state.clone(),
        auction: a.id,
    })
    .to(
        "q3",
        Produced::with(Serdes::string(), Serdes::json::<SellerAuction>()),
    );
    b.build().expect("q3 builds")
}

/// q4's value: a category's sum of closing prices and the auctions in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CategoryPrices {
    pub sum: i64,
    pub auctions: i64,
}

/// q4: the average closing price of auctions per category.
pub fn q4() -> Topology {
    let b = StreamsBuilder::new();
    let auctions = b
        .stream(
            &["auction"],
            Consumed::with(Serdes::string(), Serdes::json::<Auction>()),
        )
        .to_table(Materialized::named("q4-auctions"));
    bids(&b)
        .join_table(&auctions, |bid: &Bid, a: &Auction| {
            (bid.date_time <= a.expires).then_some((a.category as i64, bid.price as i64))
        })
        .flat_map_values(|valid: Option<(i64, i64)>| valid)
        .group_by_key(
            Grouped::named("q4-by-auction").with(Serdes::string(), Serdes::json::<(i64, i64)>()),
        )
        .reduce(
            |a, b| if b.1 > a.1 { b } else { a },
            Materialized::named("q4-closing").with_value_serde(Serdes::json()),
        )
        .group_by(
            |_, closing: &(i64, i64)| (closing.0.to_string(), closing.1),
            Grouped::named("q4-by-category").with(Serdes::string(), Serdes::i64()),
        )
        .aggregate(
            CategoryPrices::default,
            |_, price, c| CategoryPrices {
                sum: c.sum + price,
                auctions: c.auctions + 1,
            },
            |_, price, c| CategoryPrices {
                sum: c.sum - price,
                auctions: c.auctions - 1,
            },
            Materialized::named("q4-categories").with_value_serde(Serdes::json()),
        )
        .to_stream()
        .to(
            "q4",
            Produced::with(
                Serdes::string(),
                Serdes::nullable(Serdes::json::<CategoryPrices>()),
            ),
        );
    b.build().expect("q4 builds")
}

const Q5_SIZE: Duration = Duration::from_secs(10);
const Q5_ADVANCE: Duration = Duration::from_secs(2);
const Q7_SIZE_MS: i64 = 10_000;

/// q5: the auction with the most bids in each 10-second window, every 2 seconds.
pub fn q5() -> Topology {
    let b = StreamsBuilder::new();
    bids(&b)
        .group_by_key(Grouped::default())
        .windowed_by(TimeWindows::of_size_with_no_grace(Q5_SIZE).advance_by(Q5_ADVANCE))
        .count(Materialized::named("q5-bids"))
        .to_stream()
        .flat_map(|w, count| {
            count.map(|c| {
                let auction = w.key.parse().unwrap_or(0);
                (w.start.to_string(), AuctionFigure { auction, figure: c })
            })
        })
        .group_by_key(
            Grouped::named("q5-by-window").with(Serdes::string(), Serdes::json::<AuctionFigure>()),
        )
        .reduce(
            |a, b| if b.figure > a.figure { b } else { a },
            Materialized::named("q5-hottest").with_value_serde(Serdes::json()),
        )
        .to_stream()
        .to(
            "q5",
            Produced::with(
                Serdes::string(),
                Serdes::nullable(Serdes::json::<AuctionFigure>()),
            ),
        );
    b.build().expect("q5 builds")
}

/// q7: the highest bid of each 10-second window.
pub fn q7() -> Topology {
    let b = StreamsBuilder::new();
    bids(&b)
        .map(|_, bid| {
            let start = (bid.date_time as i64).div_euclid(Q7_SIZE_MS) * Q7_SIZE_MS;
            (
                start.to_string(),
                AuctionFigure {
                    auction: bid.auction,
                    figure: bid.price as i64,
                },
            )
        })
        .group_by_key(
            Grouped::named("q7-by-window").with(Serdes::string(), Serdes::json::<AuctionFigure>()),
        )
        .reduce(
            |a, b| if b.figure > a.figure { b } else { a },
            Materialized::named("q7-highest").with_value_serde(Serdes::json()),
        )
        .to_stream()
        .to(
            "q7",
            Produced::with(
                Serdes::string(),
                Serdes::nullable(Serdes::json::<AuctionFigure>()),
            ),
        );
    b.build().expect("q7 builds")
}

const Q8_WINDOW: Duration = Duration::from_secs(10);
/// On a broker the auctions reach the join through a repartition topic, behind the people
/// read straight from theirs by up to the whole run: a grace that covers the run keeps them
/// from being dropped as late (Kafka Streams needs the same, or `max.task.idle.ms`).
const Q8_GRACE: Duration = Duration::from_secs(600);

/// q8: people who opened an auction within 10 seconds of joining.
pub fn q8() -> Topology {
    let b = StreamsBuilder::new();
    let people = b.stream(
        &["person"],
        Consumed::with(Serdes::string(), Serdes::json::<Person>()),
    );
    let auctions = b
        .stream(
            &["auction"],
            Consumed::with(Serdes::string(), Serdes::json::<Auction>()),
        )
        .select_key(|_, a| a.seller.to_string())
        .repartition_with("q8-by-seller", Serdes::string(), Serdes::json::<Auction>());
    people
        .join(
            &auctions,
            |p: &Person, a: &Auction| SellerAuction {
                name: p.name.clone(),
                city: p.city.clone(),
                state: p.state.clone(),
                auction: a.id,
            },
            JoinWindows::of_time_difference_and_grace(Q8_WINDOW, Q8_GRACE),
        )
        .to(
            "q8",
            Produced::with(Serdes::string(), Serdes::json::<SellerAuction>()),
        );
    b.build().expect("q8 builds")
}

/// The queries, by name, with their output topic.
pub const QUERIES: &[(&str, &str)] = &[
    ("q0 pass-through", "q0"),
    ("q1 currency conversion", "q1"),
    ("q2 selection", "q2"),
    ("q3 local item suggestion (stream–table join)", "q3"),
    (
        "q4 average closing price per category (re-grouped table)",
        "q4",
    ),
    ("q5 hot items (hopping windows, then max)", "q5"),
    ("q7 highest bid per window", "q7"),
    ("q8 new users (windowed stream–stream join)", "q8"),
];

/// The topology of the query whose output topic is `topic`.
pub fn topology(topic: &str) -> Topology {
    match topic {
        "q0" => q0(),
        "q1" => q1(),
        "q2" => q2(),
        "q3" => q3(),
        "q4" => q4(),
        "q5" => q5(),
        "q7" => q7(),
        _ => q8(),
    }
}

/// Raw output records: key and value (`None`: a tombstone).
pub type Output = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn decoded<T: serde::de::DeserializeOwned>(out: &Output) -> Vec<(String, Option<T>)> {
    out.iter()
        .filter_map(|(k, v)| {
            let key = String::from_utf8(k.clone()).ok()?;
            let value = match v.as_deref() {
                None | Some(b"") | Some(b"null") => None,
                Some(bytes) => Some(serde_json::from_slice(bytes).ok()?),
            };
            Some((key, value))
        })
        .collect()
}

/// The last figure per window of q5's or q7's output.
fn last_figures(out: &Output) -> BTreeMap<i64, i64> {
    let mut last = BTreeMap::new();
    for (k, v) in decoded::<AuctionFigure>(out) {
        if let (Ok(start), Some(v)) = (k.parse::<i64>(), v) {
            last.insert(start, v.figure);
        }
    }
    last
}

/// The order a query sees the events in, which decides what a stream–table join finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// As generated: the test driver pipes them so.
    Generated,
    /// By timestamp across topics, a tie going to the topic first by name, in generation
    /// order within a topic: what a task reading several partitions processes once every
    /// record is at the broker (`engine/src/task/partition_group.rs`). Nexmark events share a
    /// millisecond often, so a bid generated just before its auction can still join it.
    Timestamps,
}

/// An encoded event: (topic, key, JSON value, event time).
pub type Encoded = (&'static str, Vec<u8>, Vec<u8>, i64);

fn in_arrival_order(events: &Events, arrival: Arrival) -> Vec<&Encoded> {
    let mut ordered: Vec<&Encoded> = events.encoded.iter().collect();
    if arrival == Arrival::Timestamps {
        // A stable sort: generation order stays within a topic.
        ordered.sort_by_key(|(topic, _, _, ts)| (*ts, *topic));
    }
    ordered
}

/// Checks the output of the query writing `topic` against a plain computation over `events`
/// seen in `arrival` order.
pub fn check(topic: &str, events: &Events, out: &Output, arrival: Arrival) -> Result<(), String> {
    match topic {
        "q0" => {
            if out.len() != events.bids.len() {
                return Err(format!(
                    "q0: {} bids out of {}",
                    out.len(),
                    events.bids.len()
                ));
            }
        }
        "q1" => {
            let bids = decoded::<EuroBid>(out);
            let want: u64 = events
                .bids
                .iter()
                .map(|b| b.price as u64 * 908 / 1000)
                .sum();
            let got: u64 = bids
                .iter()
                .filter_map(|(_, b)| b.as_ref())
                .map(|b| b.price_eur)
                .sum();
            if bids.len() != events.bids.len() || got != want {
                return Err(format!(
                    "q1: {} bids summing to {got}, expected {} summing to {want}",
                    bids.len(),
                    events.bids.len()
                ));
            }
        }
        "q2" => {
            let want = events.bids.iter().filter(|b| b.auction % 123 == 0).count();
            if out.len() != want {
                return Err(format!("q2: {} bids, expected {want}", out.len()));
            }
        }
        "q3" => {
            let sellers: std::collections::HashSet<usize> = events
                .persons
                .iter()
                .filter(|p| matches!(p.state.as_str(), "OR" | "ID" | "CA"))
                .map(|p| p.id)
                .collect();
            let want = events
                .auctions
                .iter()
                .filter(|a| a.category == 10 && sellers.contains(&a.seller))
                .count();
            if out.len() != want {
                return Err(format!(
                    "q3: {} auctions joined, expected {want}",
                    out.len()
                ));
            }
        }
        "q4" => {
            // In arrival order: a bid may name an auction that comes after it (the
            // generator's auction-id lead), and then joins no row, as a stream–table join does.
            let mut expires: HashMap<usize, (u64, usize)> = HashMap::new();
            let mut closing: HashMap<usize, (usize, i64)> = HashMap::new();
            for (topic, _, value, _) in in_arrival_order(events, arrival) {
                match *topic {
                    "auction" => {
                        let a: Auction =
                            serde_json::from_slice(value).map_err(|e| e.to_string())?;
                        expires.insert(a.id, (a.expires, a.category));
                    }
                    "bid" => {
                        let bid: Bid = serde_json::from_slice(value).map_err(|e| e.to_string())?;
                        if let Some((expiry, category)) = expires.get(&bid.auction) {
                            if bid.date_time <= *expiry {
                                let e = closing.entry(bid.auction).or_insert((*category, 0));
                                e.1 = e.1.max(bid.price as i64);
                            }
                        }
                    }
                    _ => {}
                }
            }
            let mut want: BTreeMap<String, CategoryPrices> = BTreeMap::new();
            for (category, price) in closing.into_values() {
                let c = want.entry(category.to_string()).or_default();
                c.sum += price;
                c.auctions += 1;
            }
            let mut got: BTreeMap<String, CategoryPrices> = BTreeMap::new();
            for (k, v) in decoded::<CategoryPrices>(out) {
                if let Some(v) = v {
                    got.insert(k, v);
                }
            }
            got.retain(|_, c| c.auctions > 0);
            if got != want {
                return Err(format!("q4: categories {got:?}, expected {want:?}"));
            }
        }
        "q5" => {
            let mut counts: HashMap<(i64, usize), i64> = HashMap::new();
            let (size, advance) = (Q5_SIZE.as_millis() as i64, Q5_ADVANCE.as_millis() as i64);
            for bid in &events.bids {
                let t = bid.date_time as i64;
                let mut start = ((t - size + advance).max(0) / advance) * advance;
                while start <= t {
                    *counts.entry((start, bid.auction)).or_default() += 1;
                    start += advance;
                }
            }
            let mut hottest: BTreeMap<i64, i64> = BTreeMap::new();
            for ((start, _), n) in counts {
                let e = hottest.entry(start).or_default();
                *e = (*e).max(n);
            }
            let last = last_figures(out);
            if last != hottest {
                let wrong = hottest.iter().find(|(s, n)| last.get(s) != Some(n));
                return Err(format!(
                    "q5: hottest counts differ, first at {wrong:?} (got {:?})",
                    wrong.and_then(|(s, _)| last.get(s))
                ));
            }
        }
        "q7" => {
            let mut highest: BTreeMap<i64, i64> = BTreeMap::new();
            for bid in &events.bids {
                let start = (bid.date_time as i64).div_euclid(Q7_SIZE_MS) * Q7_SIZE_MS;
                let e = highest.entry(start).or_default();
                *e = (*e).max(bid.price as i64);
            }
            let last = last_figures(out);
            if last != highest {
                return Err(format!(
                    "q7: highest bid per window {last:?}, expected {highest:?}"
                ));
            }
        }
        _ => {
            let joined_at: HashMap<usize, i64> = events
                .persons
                .iter()
                .map(|p| (p.id, p.date_time as i64))
                .collect();
            let window = Q8_WINDOW.as_millis() as i64;
            let want = events
                .auctions
                .iter()
                .filter(|a| {
                    joined_at
                        .get(&a.seller)
                        .is_some_and(|t| (a.date_time as i64 - t).abs() <= window)
                })
                .count();
            if out.len() != want {
                return Err(format!(
                    "q8: {} new sellers' auctions, expected {want}",
                    out.len()
                ));
            }
        }
    }
    Ok(())
}

/// Feeds the events of the topics `topology` reads, committing every 1 000; returns what the
/// query wrote to `topic`, the records fed in, and the time.
fn drive(topic: &str, events: &Events) -> Result<(Output, u64, Duration), String> {
    let topology = topology(topic);
    let inputs = topology.source_topics();
    let d = TopologyTestDriver::new(topology, StreamsConfig::new("nexmark"))
        .map_err(|e| e.to_string())?;
    d.set_commit_every_record(false);
    let mine: Vec<_> = events
        .encoded
        .iter()
        .filter(|(t, ..)| inputs.iter().any(|i| i == t))
        .cloned()
        .collect();
    let fed = mine.len() as u64;
    let started = Instant::now();
    for (i, (input, key, value, ts)) in mine.into_iter().enumerate() {
        d.pipe_raw(input, Some(key), Some(value), ts, Headers::new())
            .map_err(|e| e.to_string())?;
        if (i + 1).is_multiple_of(1_000) {
            d.commit().map_err(|e| e.to_string())?;
        }
    }
    d.commit().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let out = d
        .topic_records(topic)
        .into_iter()
        .map(|r| (r.key.unwrap_or_default(), r.value))
        .collect();
    Ok((out, fed, elapsed))
}

/// Runs every query over `events` through the driver and checks its output; one row per
/// query, q5 with its ratio to q1.
pub fn run(events: &Events) -> Result<Vec<Row>, String> {
    let mut rows: Vec<Row> = Vec::new();
    for (name, topic) in QUERIES {
        let (out, fed, time) = drive(topic, events)?;
        check(topic, events, &out, Arrival::Generated)?;
        let mut row = Row::new("nexmark (driver)", *name, fed, time);
        if *topic == "q5" {
            if let Some(q1) = rows.iter().find(|r| r.workload.starts_with("q1")) {
                row = row.against("q1", &q1.clone());
            }
        }
        rows.push(row);
    }
    Ok(rows)
}
