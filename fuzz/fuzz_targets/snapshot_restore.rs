//! Fuzzes the decoder of a ledger snapshot as a validator installs it from another
//! (`bt_chain::Store::restore`): a dump of every table, whose genesis must match. Inputs
//! whose first byte is 0 are edits of a real dump (the rest: a position, then bytes written
//! there), so that the fuzzer reaches past the genesis check; others are taken as they are.
//! Nothing may panic; a dump that restores must leave a store whose head reads back.
#![no_main]

use std::sync::OnceLock;

use bt_chain::store::Store;
use bt_keys::Keypair;
use bt_ledger::genesis_state;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    store: Store,
    dump: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bt-fuzz-restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let alice = Keypair::from_mini_secret([1; 32]);
        let genesis = genesis_state(&format!(
            "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 4\nblock_time_ms = 1000\nmax_tx_bytes = 1024\n[[accounts]]\naddress = \"{}\"\nbalance = 1000\n",
            alice.public()
        ))
        .expect("genesis");
        let (store, _) = Store::open(&dir, Some(&genesis)).expect("store");
        let dump = store.dump().expect("dump");
        store
            .restore(&dump, &[])
            .expect("a store's own dump restores");
        Fixture { store, dump }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let edited;
    let dump = match data {
        [0, lo, hi, bytes @ ..] => {
            let mut d = f.dump.clone();
            let at = usize::from(u16::from_le_bytes([*lo, *hi])) % (d.len() + 1);
            let end = (at + bytes.len()).min(d.len());
            d.splice(at..end, bytes.iter().copied());
            edited = d;
            &edited
        }
        _ => data,
    };
    if f.store.restore(dump, &[]).is_ok() {
        f.store.head_state().expect("a restored store reads back");
    }
});
