//! The checks the firmware runs on a Cortex-M under QEMU, run here on the host too.

mod shared_checks;

#[test]
fn every_on_target_check_passes_on_the_host() {
    let mut failures = Vec::new();
    let failed = shared_checks::run_all(|name, r| {
        if let Err(why) = r {
            failures.push(format!("{name}: {why}"));
        }
    });
    assert_eq!(failed, 0, "{failures:#?}");
    assert!(shared_checks::CHECKS.len() >= 13);
}
