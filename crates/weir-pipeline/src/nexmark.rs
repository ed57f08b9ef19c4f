//! Nexmark on weir-stream: the `nexmark` crate's generator as a source of JSON events, and the
//! queries q0, q1, q2, q3, q4, q5, q7, q8 and q11 built from weir-stream's operators.
//!
//! Events are JSON objects with a `type` (`person`, `auction`, `bid`) and the Nexmark fields;
//! event time is `date_time` (ms). Each query turns events into rows (text, one per output) so
//! outputs can be compared with an independent implementation; benchmarks only count them.
//!
//! | query | what | operators |
//! |---|---|---|
//! | q0 | pass-through | pipeline without steps |
//! | q1 | bid price in euro (× 0.908) | filter, map |
//! | q2 | bids of auctions whose id % 123 == 0 | filter, map |
//! | q3 | sellers in or/id/ca (the generator writes states in lower case) with auctions in category 10 | filter, key_by, `TableJoin` |
//! | q4 | average winning price per category | auction/bid state closed by the watermark, avg accumulator |
//! | q5 | hottest auctions: most bids per 10 s window sliding every 2 s | sliding count, max per window |
//! | q7 | highest bid price per 10 s tumbling window | tumbling max |
//! | q8 | new people who opened auctions in the same 10 s window | `WindowJoin` |
//! | q11 | bids per bidder session (gap 10 s) | session count |

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use weir_stream::aggregate::{Accumulator, Aggregate};
use weir_stream::event::{Event, WindowResult};
use weir_stream::join::{Side, TableJoin, WindowJoin};
use weir_stream::pipeline::Pipeline;
use weir_stream::window::Window;
use weir_stream::StreamError;
use weir_stream::WindowSpec;

pub const QUERIES: [&str; 9] = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11"];

/// A generator of `events_per_second` (event time; Nexmark's default is 10,000) with a fixed
/// base time, so the same count gives the same events on every run.
pub fn generator(events_per_second: usize) -> nexmark::EventGenerator {
    let config = nexmark::config::NexmarkConfig {
        base_time: 1_700_000_000_000,
        first_rate: events_per_second,
        next_rate: events_per_second,
        ..Default::default()
    };
    nexmark::EventGenerator::new(config)
}

/// The JSON event for a generated Nexmark event.
pub fn to_event(e: &nexmark::event::Event, offset: i64) -> Event {
    use nexmark::event::Event as N;
    let (value, t) = match e {
        N::Person(p) => (
            json!({"type": "person", "id": p.id, "name": p.name, "email_address": p.email_address,
                   "credit_card": p.credit_card, "city": p.city, "state": p.state, "date_time": p.date_time,
                   "extra": p.extra}),
            p.date_time,
        ),
        N::Auction(a) => (
            json!({"type": "auction", "id": a.id, "item_name": a.item_name, "description": a.description,
                   "initial_bid": a.initial_bid, "reserve": a.reserve, "date_time": a.date_time, "expires": a.expires,
                   "seller": a.seller, "category": a.category, "extra": a.extra}),
            a.date_time,
        ),
        N::Bid(b) => (
            json!({"type": "bid", "auction": b.auction, "bidder": b.bidder, "price": b.price, "channel": b.channel,
                   "url": b.url, "date_time": b.date_time, "extra": b.extra}),
            b.date_time,
        ),
    };
    Event { key: None, value, timestamp_ms: t as i64, partition: 0, offset, source: 0, raw: None }
}

/// A generated event as the `nexmark` crate serializes it: `{"Bid": {...}}` and so on.
pub fn to_crate_json(e: &nexmark::event::Event) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

/// A JSON event read back from a topic (time from `date_time`).
pub fn from_json(value: Value, offset: i64) -> Option<Event> {
    let t = value.get("date_time")?.as_i64()?;
    Some(Event { key: None, value, timestamp_ms: t, partition: 0, offset, source: 0, raw: None })
}

/// Query outputs: always counted, kept as rows when asked (tests).
#[derive(Debug, Default)]
pub struct Output {
    pub count: u64,
    pub rows: Option<Vec<String>>,
}

impl Output {
    pub fn collecting() -> Self {
        Self { count: 0, rows: Some(Vec::new()) }
    }
    fn emit(&mut self, row: impl FnOnce() -> String) {
        self.count += 1;
        if let Some(r) = &mut self.rows {
            r.push(row());
        }
    }
}

fn int(v: &Value, field: &str) -> i64 {
    v.get(field).and_then(Value::as_i64).unwrap_or_default()
}
fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}
fn is(ev: &Event, kind: &str) -> bool {
    ev.value.get("type").and_then(Value::as_str) == Some(kind)
}
fn key_of(field: &'static str) -> impl Fn(&Event) -> Option<String> + Send {
    move |ev| ev.value.get(field).map(|v| v.as_i64().map_or_else(|| v.to_string(), |i| i.to_string()))
}

fn window(window: Window, aggregate: Aggregate, field: Option<&str>) -> WindowSpec {
    WindowSpec {
        window,
        aggregate,
        field: field.map(str::to_owned),
        allowed_lateness_ms: 0,
        early_updates: false,
        max_open_windows: 10_000_000,
        name: "value".into(),
        extra: Vec::new(),
        end_field: None,
    }
}

const TEN_SECONDS: i64 = 10_000;
const MAX_STATE: usize = 50_000_000;

enum Kind {
    /// q0, q1, q2: stateless pipelines.
    Stateless(Pipeline, fn(&Value) -> String),
    Q3 {
        persons: Pipeline,
        auctions: Pipeline,
        join: TableJoin,
    },
    Q4(WinningBids),
    /// q5, q7, q11: a windowed pipeline and how its results become rows.
    Windowed(Pipeline, fn(&[WindowResult], &mut Output)),
    Q8 {
        persons: Pipeline,
        auctions: Pipeline,
        join: WindowJoin,
    },
}

/// One running Nexmark query.
pub struct Query {
    kind: Kind,
    pub output: Output,
}

impl Query {
    pub fn new(name: &str, output: Output) -> Result<Self, StreamError> {
        let b = Pipeline::builder;
        let kind = match name {
            "q0" => Kind::Stateless(b().build()?, |v| match text(v, "type") {
                "bid" => format!("bid|{}|{}|{}|{}", int(v, "auction"), int(v, "bidder"), int(v, "price"), int(v, "date_time")),
                t => format!("{t}|{}|{}", int(v, "id"), int(v, "date_time")),
            }),
            "q1" => Kind::Stateless(
                b().filter(|e| is(e, "bid"))
                    .map(|mut e| {
                        let v = &e.value;
                        let price = int(v, "price") as f64 * 0.908;
                        e.value = json!({"auction": v["auction"], "bidder": v["bidder"], "price": price, "date_time": v["date_time"]});
                        e
                    })
                    .build()?,
                |v| {
                    let price = v.get("price").and_then(Value::as_f64).unwrap_or_default();
                    format!("{}|{}|{price:.3}|{}", int(v, "auction"), int(v, "bidder"), int(v, "date_time"))
                },
            ),
            "q2" => Kind::Stateless(
                b().filter(|e| is(e, "bid") && int(&e.value, "auction") % 123 == 0)
                    .map(|mut e| {
                        e.value = json!({"auction": e.value["auction"], "price": e.value["price"]});
                        e
                    })
                    .build()?,
                |v| format!("{}|{}", int(v, "auction"), int(v, "price")),
            ),
            "q3" => Kind::Q3 {
                persons: b()
                    .filter(|e| is(e, "person") && matches!(text(&e.value, "state"), "or" | "id" | "ca"))
                    .key_by(key_of("id"))
                    .build()?,
                auctions: b()
                    .filter(|e| is(e, "auction") && int(&e.value, "category") == 10)
                    .key_by(key_of("seller"))
                    .build()?,
                join: TableJoin::new(MAX_STATE),
            },
            "q4" => Kind::Q4(WinningBids::default()),
            "q5" => Kind::Windowed(
                b().filter(|e| is(e, "bid"))
                    .key_by(key_of("auction"))
                    .window(window(Window::Sliding { size_ms: TEN_SECONDS, slide_ms: 2_000 }, Aggregate::Count, None))
                    .build()?,
                hot_items,
            ),
            "q7" => Kind::Windowed(
                b().filter(|e| is(e, "bid"))
                    .key_by(|_| Some(String::new()))
                    .window(window(Window::Tumbling { size_ms: TEN_SECONDS }, Aggregate::Max, Some("price")))
                    .build()?,
                |results, out| {
                    for r in results {
                        out.emit(|| format!("{}|{}", r.window_start_ms, r.value as i64));
                    }
                },
            ),
            "q8" => Kind::Q8 {
                persons: b().filter(|e| is(e, "person")).key_by(key_of("id")).build()?,
                auctions: b().filter(|e| is(e, "auction")).key_by(key_of("seller")).build()?,
                join: WindowJoin::new(TEN_SECONDS, 0, 0, MAX_STATE)?,
            },
            "q11" => Kind::Windowed(
                b().filter(|e| is(e, "bid"))
                    .key_by(key_of("bidder"))
                    .window(window(Window::Session { gap_ms: TEN_SECONDS }, Aggregate::Count, None))
                    .build()?,
                |results, out| {
                    for r in results {
                        out.emit(|| format!("{}|{}|{}|{}", r.key, r.window_start_ms, r.window_end_ms, r.count));
                    }
                },
            ),
            _ => return Err(StreamError::InvalidSpec("unknown Nexmark query (q0 q1 q2 q3 q4 q5 q7 q8 q11)")),
        };
        Ok(Self { kind, output })
    }

    /// Processes one event.
    pub fn push(&mut self, ev: Event) -> Result<(), StreamError> {
        let out = &mut self.output;
        match &mut self.kind {
            Kind::Stateless(p, row) => {
                for e in p.process(ev, 0)?.events {
                    out.emit(|| row(&e.value));
                }
            }
            Kind::Q3 { persons, auctions, join } => {
                let (side, p) = if is(&ev, "person") { (Side::Left, persons) } else { (Side::Right, auctions) };
                for e in p.process(ev, 0)?.events {
                    let key = e.key.as_deref().unwrap_or_default();
                    join.push(side, key, e.value, |person, auction| {
                        out.emit(|| {
                            format!(
                                "{}|{}|{}|{}",
                                text(person, "name"),
                                text(person, "city"),
                                text(person, "state"),
                                int(auction, "id")
                            )
                        })
                    })?;
                }
            }
            Kind::Q4(w) => w.push(&ev, out),
            Kind::Windowed(p, rows) => {
                let o = p.process(ev, 0)?;
                rows(&o.results, out);
            }
            Kind::Q8 { persons, auctions, join } => {
                let (side, p) = if is(&ev, "person") { (Side::Left, persons) } else { (Side::Right, auctions) };
                for e in p.process(ev, 0)?.events {
                    let pairs = join.push(side, e, 0)?.0;
                    new_users(&pairs, out);
                }
            }
        }
        Ok(())
    }

    /// End of input: closes every window and emits what is left.
    pub fn finish(&mut self) {
        let out = &mut self.output;
        let end = i64::MAX / 2;
        match &mut self.kind {
            Kind::Stateless(..) | Kind::Q3 { .. } => {}
            Kind::Q4(w) => w.finish(out),
            Kind::Windowed(p, rows) => rows(&p.advance_watermark(end).results, out),
            Kind::Q8 { join, .. } => new_users(&join.advance_watermark(end), out),
        }
    }
}

/// q5: per window, the auctions with the most bids.
fn hot_items(results: &[WindowResult], out: &mut Output) {
    let mut best: BTreeMap<i64, (u64, Vec<&str>)> = BTreeMap::new();
    for r in results {
        let e = best.entry(r.window_start_ms).or_insert((0, Vec::new()));
        if r.count > e.0 {
            *e = (r.count, vec![r.key.as_str()]);
        } else if r.count == e.0 {
            e.1.push(&r.key);
        }
    }
    for (start, (count, auctions)) in best {
        for a in auctions {
            out.emit(|| format!("{start}|{a}|{count}"));
        }
    }
}

/// q8: distinct (person, window) among the joined pairs.
fn new_users(pairs: &[weir_stream::Joined], out: &mut Output) {
    let distinct: BTreeSet<(i64, &str, i64)> =
        pairs.iter().map(|j| (int(&j.left, "id"), text(&j.left, "name"), j.window_start_ms)).collect();
    for (id, name, start) in distinct {
        out.emit(|| format!("{id}|{name}|{start}"));
    }
}

/// q4: the highest bid of each auction between its start and its expiry (bids for auctions not
/// seen yet are ignored); an auction closes when the watermark passes its expiry, and its
/// winning price joins its category's average.
#[derive(Default)]
struct WinningBids {
    /// id -> (category, start, expires, best price)
    open: HashMap<i64, (i64, i64, i64, Option<i64>)>,
    closing: BTreeSet<(i64, i64)>,
    averages: BTreeMap<i64, Accumulator>,
    watermark: i64,
}

impl WinningBids {
    fn push(&mut self, ev: &Event, _: &mut Output) {
        let v = &ev.value;
        match text(v, "type") {
            "auction" => {
                let (id, expires) = (int(v, "id"), int(v, "expires"));
                self.open.insert(id, (int(v, "category"), int(v, "date_time"), expires, None));
                self.closing.insert((expires, id));
            }
            "bid" => {
                if let Some((_, start, expires, best)) = self.open.get_mut(&int(v, "auction")) {
                    let (t, price) = (int(v, "date_time"), int(v, "price"));
                    if *start <= t && t <= *expires && best.is_none_or(|b| price > b) {
                        *best = Some(price);
                    }
                }
            }
            _ => {}
        }
        self.watermark = self.watermark.max(ev.timestamp_ms);
        self.close(self.watermark);
    }

    fn close(&mut self, watermark: i64) {
        while self.closing.first().is_some_and(|(expires, _)| *expires < watermark) {
            let Some((_, id)) = self.closing.pop_first() else { break };
            if let Some((category, _, _, Some(price))) = self.open.remove(&id) {
                self.averages.entry(category).or_default().add(price as f64, "", Aggregate::Avg);
            }
        }
    }

    fn finish(&mut self, out: &mut Output) {
        self.close(i64::MAX);
        for (category, acc) in &self.averages {
            out.emit(|| format!("{category}|{:.3}", acc.result(Aggregate::Avg)));
        }
    }
}

/// Runs a query over `n` generated events in-process; returns its output and the seconds the
/// engine took (generation and JSON conversion excluded).
pub fn run_in_process(name: &str, n: usize, rate: usize, collect: bool) -> Result<(Output, f64), StreamError> {
    let events: Vec<Event> = generator(rate).take(n).enumerate().map(|(i, e)| to_event(&e, i as i64)).collect();
    run_events(name, events, collect)
}

/// Runs a query over prepared events; returns its output and the seconds it took.
pub fn run_events(name: &str, events: Vec<Event>, collect: bool) -> Result<(Output, f64), StreamError> {
    let mut q = Query::new(name, if collect { Output::collecting() } else { Output::default() })?;
    let started = std::time::Instant::now();
    for ev in events {
        q.push(ev)?;
    }
    q.finish();
    Ok((q.output, started.elapsed().as_secs_f64()))
}
