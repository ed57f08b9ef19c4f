//! The independent Nexmark computation both Nexmark tests compare with: typed structs, loops
//! and maps; no weir-stream operators.

use nexmark::event::Event as N;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const RATE: usize = 500; // 120 s of event time: a dozen 10 s windows

fn window_start(t: u64, size: u64) -> u64 {
    t / size * size
}

pub fn reference(query: &str, events: &[N]) -> Vec<String> {
    let bids = || events.iter().filter_map(|e| if let N::Bid(b) = e { Some(b) } else { None });
    let mut rows = Vec::new();
    match query {
        "q0" => {
            for e in events {
                rows.push(match e {
                    N::Person(p) => format!("person|{}|{}", p.id, p.date_time),
                    N::Auction(a) => format!("auction|{}|{}", a.id, a.date_time),
                    N::Bid(b) => format!("bid|{}|{}|{}|{}", b.auction, b.bidder, b.price, b.date_time),
                })
            }
        }
        "q1" => {
            for b in bids() {
                rows.push(format!("{}|{}|{:.3}|{}", b.auction, b.bidder, b.price as f64 * 0.908, b.date_time));
            }
        }
        "q2" => {
            for b in bids().filter(|b| b.auction % 123 == 0) {
                rows.push(format!("{}|{}", b.auction, b.price));
            }
        }
        "q3" => {
            let mut persons = HashMap::new();
            let mut auctions = Vec::new();
            for e in events {
                match e {
                    N::Person(p) if ["or", "id", "ca"].contains(&p.state.as_str()) => {
                        persons.insert(p.id, p);
                    }
                    N::Auction(a) if a.category == 10 => auctions.push(a),
                    _ => {}
                }
            }
            for a in auctions {
                if let Some(p) = persons.get(&a.seller) {
                    rows.push(format!("{}|{}|{}|{}", p.name, p.city, p.state, a.id));
                }
            }
        }
        "q4" => {
            // The winning bid: highest price within [start, expires], among bids after the auction.
            let mut auctions: HashMap<usize, (usize, u64, u64, Option<usize>)> = HashMap::new();
            for e in events {
                match e {
                    N::Auction(a) => {
                        auctions.insert(a.id, (a.category, a.date_time, a.expires, None));
                    }
                    N::Bid(b) => {
                        if let Some((_, start, expires, best)) = auctions.get_mut(&b.auction) {
                            if *start <= b.date_time && b.date_time <= *expires {
                                *best = Some(best.map_or(b.price, |x| x.max(b.price)));
                            }
                        }
                    }
                    N::Person(_) => {}
                }
            }
            let mut per_category: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
            for (category, _, _, best) in auctions.values() {
                if let Some(price) = best {
                    let e = per_category.entry(*category).or_default();
                    e.0 += *price as f64;
                    e.1 += 1.0;
                }
            }
            for (c, (sum, n)) in per_category {
                rows.push(format!("{c}|{:.3}", sum / n));
            }
        }
        "q5" => {
            let mut counts: BTreeMap<(u64, usize), u64> = BTreeMap::new();
            for b in bids() {
                // Windows of 10 s starting every 2 s that contain the bid.
                let last = window_start(b.date_time, 2_000);
                let mut start = last as i64;
                while start > b.date_time as i64 - 10_000 {
                    *counts.entry((start as u64, b.auction)).or_default() += 1;
                    start -= 2_000;
                }
            }
            let mut max: BTreeMap<u64, u64> = BTreeMap::new();
            for (&(w, _), &n) in &counts {
                let m = max.entry(w).or_default();
                *m = (*m).max(n);
            }
            for ((w, a), n) in counts {
                if max[&w] == n {
                    rows.push(format!("{w}|{a}|{n}"));
                }
            }
        }
        "q7" => {
            let mut max: BTreeMap<u64, usize> = BTreeMap::new();
            for b in bids() {
                let m = max.entry(window_start(b.date_time, 10_000)).or_default();
                *m = (*m).max(b.price);
            }
            for (w, p) in max {
                rows.push(format!("{w}|{p}"));
            }
        }
        "q8" => {
            let mut people = BTreeSet::new();
            let mut sellers = BTreeSet::new();
            for e in events {
                match e {
                    N::Person(p) => {
                        people.insert((p.id, p.name.clone(), window_start(p.date_time, 10_000)));
                    }
                    N::Auction(a) => {
                        sellers.insert((a.seller, window_start(a.date_time, 10_000)));
                    }
                    N::Bid(_) => {}
                }
            }
            for (id, name, w) in people {
                if sellers.contains(&(id, w)) {
                    rows.push(format!("{id}|{name}|{w}"));
                }
            }
        }
        "q11" => {
            // Per bidder, in time order: a bid more than 10 s after the session's last bid
            // starts a new session; a session ends 10 s after its last bid.
            let mut sessions: HashMap<usize, Vec<(u64, u64, u64)>> = HashMap::new();
            for b in bids() {
                let s = sessions.entry(b.bidder).or_default();
                match s.last_mut() {
                    Some((_, end, n)) if b.date_time <= *end => {
                        *end = (*end).max(b.date_time + 10_000);
                        *n += 1;
                    }
                    _ => s.push((b.date_time, b.date_time + 10_000, 1)),
                }
            }
            for (bidder, list) in sessions {
                for (start, end, n) in list {
                    rows.push(format!("{bidder}|{start}|{end}|{n}"));
                }
            }
        }
        _ => unreachable!(),
    }
    rows.sort();
    rows
}
