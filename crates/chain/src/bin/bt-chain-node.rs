//! A bare node process for the crash tests: `bt-chain-node DATA_DIR GENESIS_TOML LISTEN`.
//! Prints `listening ADDR` once serving, and runs until killed or interrupted.
//! The user-facing command is `bt chain run`.

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, genesis, listen] = args.as_slice() else {
        return Err("usage: bt-chain-node DATA_DIR GENESIS_TOML LISTEN".into());
    };
    let text = std::fs::read_to_string(genesis)?;
    let state = bt_ledger::genesis_state(&text)?;
    let mut cfg = bt_chain::NodeConfig::new(dir.into(), Some(state));
    cfg.listen = listen.parse()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let node = bt_chain::serve(cfg).await?;
        println!("listening {}", node.addr);
        std::io::stdout().flush()?;
        node.run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(())
    })
}
