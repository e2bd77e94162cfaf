//! `echo` (seed 004): every byte back, in order, unchanged. No framing, so it
//! is binary-safe and a message of any size comes back whole.

use std::sync::Arc;

use super::{Cx, Factory, FnFactory, Next, Service, Shared};

/// The echo service. Stateless: it consumes whatever it is given.
#[derive(Debug, Default)]
pub struct Echo;

impl Service for Echo {
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        cx.out.extend_from_slice(input);

        (input.len(), Next::Answered)
    }
}

/// The factory the registry uses.
pub fn factory(_shared: &Shared) -> Arc<dyn Factory> {
    FnFactory::new("echo", || Box::new(Echo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::assert_dialogue;

    #[test]
    fn echoes_bytes_in_any_split() {
        let input = b"hello\n\x00\xff binary \r\n";
        assert_dialogue(|| Box::new(Echo), input, input);
    }
}
