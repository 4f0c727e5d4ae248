//! Find the line and column of a key path (`routes[2].upstream`) in YAML text, so errors found
//! after deserialising (an unknown upstream, a duplicate name) still point at the file.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

enum Frame {
    Map {
        key: Option<String>,
        expecting_key: bool,
    },
    Seq {
        index: usize,
    },
}

struct Locator<'a> {
    want: &'a str,
    stack: Vec<Frame>,
    found: Option<(usize, usize)>,
    /// The wanted path is a mapping: report its first key, whose marker is exact.
    pending: bool,
    /// Report the value of the wanted key rather than the key.
    value: bool,
    /// The wanted key was seen; its value is the next node.
    awaiting_value: bool,
}

impl Locator<'_> {
    fn path(&self, leaf_key: Option<&str>) -> String {
        let mut out = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Map {
                    key: Some(k),
                    expecting_key: false,
                } => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Frame::Seq { index } => out.push_str(&format!("[{index}]")),
                _ => {}
            }
        }
        if let Some(k) = leaf_key {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(k);
        }
        out
    }

    /// A value (scalar or collection start) was seen: update the parent frame.
    fn value_seen(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { expecting_key, key }) => {
                *expecting_key = true;
                *key = None;
            }
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Locator<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.found.is_some() {
            return;
        }
        let pos = (mark.line(), mark.col() + 1);
        if self.awaiting_value {
            if let Event::Scalar(..)
            | Event::MappingStart(..)
            | Event::SequenceStart(..)
            | Event::Alias(_) = ev
            {
                self.found = Some(pos);
                return;
            }
        }
        if self.pending {
            if let Event::Scalar(..) = ev {
                self.found = Some(pos);
                return;
            }
        }
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map {
                    expecting_key: true,
                    ..
                }) = self.stack.last()
                {
                    if self.path(Some(&text)) == self.want {
                        if self.value {
                            self.awaiting_value = true;
                        } else {
                            self.found = Some(pos);
                        }
                    }
                    if let Some(Frame::Map { key, expecting_key }) = self.stack.last_mut() {
                        *key = Some(text);
                        *expecting_key = false;
                    }
                } else {
                    if self.path(None) == self.want {
                        self.found = Some(pos);
                    }
                    self.value_seen();
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if self.path(None) == self.want && !self.stack.is_empty() {
                    if matches!(ev, Event::MappingStart(..)) {
                        self.pending = true;
                    } else {
                        self.found = Some(pos);
                    }
                }
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        key: None,
                        expecting_key: true,
                    }
                } else {
                    Frame::Seq { index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_seen();
            }
            Event::Alias(_) => self.value_seen(),
            _ => {}
        }
    }
}

/// 1-based (line, column) of the key (or sequence item) at `path`; falls back to the nearest
/// enclosing path that exists.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let mut want = path.to_string();
    loop {
        if let Some(found) = locate_exact(text, &want) {
            return Some(found);
        }
        // Shorten `a.b[2].c` to `a.b[2]`, then `a.b`, …
        let cut = want.rfind(['.', '['])?;
        want.truncate(cut);
        if want.is_empty() {
            return None;
        }
    }
}

/// 1-based (line, column) of the key (or sequence item) at `path`, if the file has it.
pub fn locate_exact(text: &str, path: &str) -> Option<(usize, usize)> {
    find(text, path, false)
}

/// 1-based (line, column) of the value at `path` (a scalar, or where a `{`/`[` or block
/// starts), if the file has it: where a value of the wrong shape is.
pub fn locate_value(text: &str, path: &str) -> Option<(usize, usize)> {
    find(text, path, true)
}

fn find(text: &str, path: &str, value: bool) -> Option<(usize, usize)> {
    let mut loc = Locator {
        want: path,
        stack: Vec::new(),
        found: None,
        pending: false,
        value,
        awaiting_value: false,
    };
    // A YAML syntax error after the wanted key still leaves it found.
    let _ = Parser::new_from_str(text).load(&mut loc, false);
    loc.found
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn finds_keys_and_sequence_items() {
        let text =
            "listen: x\nroutes:\n  - name: a\n    upstream: one\n  - name: b\n    upstream: two\n";
        assert_eq!(locate(text, "listen"), Some((1, 1)));
        assert_eq!(locate(text, "routes[1].upstream"), Some((6, 5)));
        assert_eq!(locate(text, "routes[1].missing"), Some((5, 5)));
    }

    #[test]
    fn finds_values_of_keys() {
        let text = "a:\n  b: 30x\n  c: { d: [1] }\n  e:\n    - f\n";
        assert_eq!(super::locate_value(text, "a.b"), Some((2, 6)));
        assert_eq!(super::locate_value(text, "a.c"), Some((3, 6)));
        assert_eq!(super::locate_value(text, "a.c.d"), Some((3, 11)));
        assert_eq!(super::locate_value(text, "a.e"), Some((5, 5)));
        assert_eq!(super::locate_value(text, "a.x"), None);
    }
}
