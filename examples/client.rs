//! The interactive line client of the seeds (`client_thread1.py`): the same
//! code as `readyloop client` ([`readyloop::client`]), so the ladder's
//! servers can be tried without installing the binary.
//!
//! Prints "Please enter 'quit' to exit", then prompts ` -> `, sends each
//! line you type and prints the reply before the next prompt. `quit` sends
//! `--quit--` and leaves, as the seed does; so does the end of input.
//!
//! Run:  `cargo run --example 02_thread_per_client -- 9000` in one terminal,
//!       `cargo run --example client -- 127.0.0.1:9000` in two others.
//! Try:  type in both clients at once against each rung; against
//!       `01_blocking` the second client gets no reply until the first quits.
//!       Piped: `printf 'hello\nquit\n' | cargo run --example client -- 127.0.0.1:9000`

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    readyloop::client::run(&addr)
}
