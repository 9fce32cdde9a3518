//! Reading a policy bundle (.tar.gz from elsewhere): any bytes load or are refused with an
//! error; never a panic, never a hang past the size limits.
#![no_main]

use cordon_policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("bundle.tar.gz");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = Policy::load(&path);
});
