//! The import format parser (`portable::verify`, the pass that reads and checks a whole export
//! before import writes anything), on arbitrary bytes: an `Invalid` error or a header, never a
//! panic.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use percolate::Error;
use percolate::portable;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write input");
    file.flush().expect("flush input");
    match portable::verify(file.path()) {
        Ok(header) => {
            assert_eq!(header.format, portable::FORMAT);
            assert_eq!(header.version, portable::FORMAT_VERSION);
            let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(header.counts.total() + 2, lines, "counts agree with the lines");
        }
        Err(Error::Invalid { .. }) => {}
        Err(other) => panic!("a bad file must be Invalid, got {other:?}"),
    }
});
