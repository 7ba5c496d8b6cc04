//! What the `persist` target's inputs exercise: how many cull, cut a culling insert, and
//! reopen without some of the victims, by policy.
//!
//! ```sh
//! cd fuzz && cargo run --release --example persist_reach -- corpus/persist
//! ```
//!
//! Each argument is a file or a directory of inputs (decoded as the target decodes them,
//! then run through all its checks on both front ends).

use std::fs;
use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};
use tickcache_fuzz::persist::{reach, Input, PolicySeed, Reach};

#[derive(Default)]
struct Tally {
    inputs: u64,
    culling: u64,
    cut_culling: u64,
    lost: u64,
    cut: u64,
    sum: Reach,
}

impl Tally {
    fn add(&mut self, r: Reach) {
        self.inputs += 1;
        self.culling += u64::from(r.culls > 0);
        self.cut_culling += u64::from(r.cut_culls > 0);
        self.lost += u64::from(r.lost_victims > 0);
        self.cut += u64::from(r.cuts > 0);
        self.sum += r;
    }

    fn print(&self, name: &str) {
        let share = |n: u64| 100.0 * n as f64 / self.inputs.max(1) as f64;
        println!(
            "{name:<13} {:>6} inputs | cut {:>5.1}% | cull {:>5.1}% | cut a culling insert \
             {:>5.1}% | lost victims {:>5.1}% | culls {} cut culls {} reopens {} losing victims {} cut opens {}",
            self.inputs,
            share(self.cut),
            share(self.culling),
            share(self.cut_culling),
            share(self.lost),
            self.sum.culls,
            self.sum.cut_culls,
            self.sum.reopens,
            self.sum.lost_victims,
            self.sum.cut_opens,
        );
    }
}

fn main() {
    let mut files: Vec<PathBuf> = Vec::new();
    for arg in std::env::args().skip(1) {
        let path = PathBuf::from(arg);
        if path.is_dir() {
            let entries = fs::read_dir(&path).expect("readable directory");
            files.extend(entries.filter_map(Result::ok).map(|e| e.path()));
        } else {
            files.push(path);
        }
    }
    files.sort();
    let (mut all, mut through, mut back) = (Tally::default(), Tally::default(), Tally::default());
    for file in files.iter().filter(|p| p.is_file()) {
        let data = fs::read(file).expect("readable input");
        let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(&data)) else {
            continue;
        };
        let r = reach(&input);
        all.add(r);
        match input.policy {
            PolicySeed::WriteThrough => through.add(r),
            PolicySeed::WriteBack(_) => back.add(r),
        }
    }
    all.print("all");
    through.print("write-through");
    back.print("write-back");
}
