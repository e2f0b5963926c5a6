//! Bytes no responder claims: one turn until the client pauses, or until what it sent so far
//! ends a line (a text client that ended its line waits for an answer), answered with the
//! client's IP (what Spip answers to anything it does not know).

use super::{After, Context, Framing, Responder, TurnFields};
use crate::record::format_ip;

pub struct Raw;

pub struct RawTurn;

impl Responder for Raw {
    const NAME: &'static str = "raw";
    type Turn<'a> = RawTurn;

    fn new(_ctx: &Context<'_>) -> Self {
        Raw
    }

    fn frame(&mut self, pending: &[u8], _new_from: usize) -> Framing {
        if pending.last() == Some(&b'\n') {
            Framing::Complete(pending.len())
        } else {
            Framing::AtPause
        }
    }

    fn parse(&self, _turn: &[u8]) -> RawTurn {
        RawTurn
    }

    fn reply(&mut self, _turn: &RawTurn, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        let mut ip = [0u8; 46];
        let n = format_ip(&mut ip, ctx.client.ip());
        out.extend_from_slice(&ip[..n]);
        After::KeepOpen
    }
}

impl TurnFields for RawTurn {
    fn protocol(&self) -> Option<&'static str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::converse;

    #[test]
    fn one_turn_per_pause_answered_with_the_ip() {
        let t = converse::<Raw>(false, &[b"a", b"b", b"c"]);
        assert_eq!(t.turns.len(), 1);
        assert_eq!(t.turns[0].bytes, b"abc");
        assert_eq!(t.turns[0].reply, b"192.0.2.7");
    }

    #[test]
    fn a_finished_line_is_a_turn() {
        let t = converse::<Raw>(false, &[b"probe", b" 1\n", b"probe 2\n", b"x"]);
        let turns: Vec<&[u8]> = t.turns.iter().map(|t| &t.bytes[..]).collect();
        assert_eq!(turns, [&b"probe 1\n"[..], b"probe 2\n", b"x"]);
    }
}
