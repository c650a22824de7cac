//! The label selector query syntax: a lexer and recursive-descent parser with the same
//! grammar, token rules and error messages as upstream `labels.Parse`.

use super::labels::{LabelOp, LabelRequirement};
use super::validation::{field_invalid, go_quote, label_key_errors};
use super::SelectorError;

/// Parses a selector string into its requirements (unsorted).
pub(super) fn parse_requirements(s: &str) -> Result<Vec<LabelRequirement>, SelectorError> {
    let mut parser = Parser {
        tokens: lex(s),
        pos: 0,
    };
    parser.parse()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    Greater,
    Ident(String),
    In,
    Less,
    NotEquals,
    NotIn,
    OpenPar,
}

impl Tok {
    fn literal(&self) -> &str {
        match self {
            Tok::End => "",
            Tok::ClosedPar => ")",
            Tok::Comma => ",",
            Tok::Not => "!",
            Tok::DoubleEquals => "==",
            Tok::Equals => "=",
            Tok::Greater => ">",
            Tok::Ident(s) => s,
            Tok::In => "in",
            Tok::Less => "<",
            Tok::NotEquals => "!=",
            Tok::NotIn => "notin",
            Tok::OpenPar => "(",
        }
    }

    /// In a values position `in` and `notin` are plain identifiers.
    fn as_value(&self) -> Tok {
        match self {
            Tok::In | Tok::NotIn => Tok::Ident(self.literal().to_string()),
            other => other.clone(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn symbol(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::Not,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::Greater,
        "<" => Tok::Less,
        "!=" => Tok::NotEquals,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn lex(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && is_space(chars[i]) {
            i += 1;
        }
        if i >= chars.len() {
            out.push(Tok::End);
            return out;
        }
        if is_special(chars[i]) {
            // Longest run of special characters that still forms a known operator.
            let mut buf = String::new();
            let mut last: Option<(Tok, usize)> = None;
            let mut j = i;
            while j < chars.len() && is_special(chars[j]) {
                buf.push(chars[j]);
                match symbol(&buf) {
                    Some(t) => last = Some((t, j + 1)),
                    None if last.is_some() => break,
                    None => {}
                }
                j += 1;
            }
            match last {
                Some((t, end)) => {
                    out.push(t);
                    i = end;
                }
                // Unreachable with the current symbol set (every single special is a token).
                None => {
                    out.push(Tok::Ident(buf));
                    i = j;
                }
            }
        } else {
            let start = i;
            while i < chars.len() && !is_special(chars[i]) && !is_space(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident(word),
            });
        }
    }
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Tok {
        self.tokens.get(self.pos).cloned().unwrap_or(Tok::End)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            match self.peek().as_value() {
                Tok::Ident(_) | Tok::Not => {
                    let r = self.requirement().map_err(|e| {
                        SelectorError(format!("unable to parse requirement: {}", e.0))
                    })?;
                    reqs.push(r);
                    match self.next().as_value() {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let t = self.peek().as_value();
                            if !matches!(t, Tok::Ident(_) | Tok::Not) {
                                return Err(SelectorError(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                )));
                            }
                        }
                        t => {
                            return Err(SelectorError(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            )))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    )))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        let mut negated = false;
        let mut tok = self.next().as_value();
        if tok == Tok::Not {
            negated = true;
            tok = self.next().as_value();
        }
        let Tok::Ident(key) = tok else {
            return Err(SelectorError(format!(
                "found '{}', expected: identifier",
                tok.literal()
            )));
        };
        let key_errs = label_key_errors(&key);
        if !key_errs.is_empty() {
            return Err(SelectorError(field_invalid(
                "<nil>",
                &go_quote(&key),
                &key_errs.join("; "),
            )));
        }
        if negated {
            // `!k` never takes an operator; `!k=v` fails on the '=' in the caller.
            return LabelRequirement::new(&key, LabelOp::DoesNotExist, Vec::new());
        }
        if matches!(self.peek().as_value(), Tok::End | Tok::Comma) {
            return LabelRequirement::new(&key, LabelOp::Exists, Vec::new());
        }
        let op = match self.next() {
            Tok::In => LabelOp::In,
            Tok::Equals => LabelOp::Equals,
            Tok::DoubleEquals => LabelOp::DoubleEquals,
            Tok::Greater => LabelOp::GreaterThan,
            Tok::Less => LabelOp::LessThan,
            Tok::NotIn => LabelOp::NotIn,
            Tok::NotEquals => LabelOp::NotEquals,
            t => {
                return Err(SelectorError(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                )))
            }
        };
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        LabelRequirement::new(&key, op, values)
    }

    /// `(a,b,c)`; returns the values sorted and de-duplicated like a Go `sets.String`.
    fn set_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let t = self.next().as_value();
        if t != Tok::OpenPar {
            return Err(SelectorError(format!(
                "found '{}' expected: '('",
                t.literal()
            )));
        }
        let mut set = std::collections::BTreeSet::new();
        match self.peek().as_value() {
            Tok::Ident(_) | Tok::Comma => {
                loop {
                    match self.next().as_value() {
                        Tok::Ident(v) => {
                            set.insert(v);
                            match self.peek().as_value() {
                                Tok::Comma => continue,
                                Tok::ClosedPar => break,
                                t => {
                                    return Err(SelectorError(format!(
                                        "found '{}', expected: ',' or ')'",
                                        t.literal()
                                    )))
                                }
                            }
                        }
                        Tok::Comma => {
                            if set.is_empty() {
                                set.insert(String::new());
                            }
                            match self.peek().as_value() {
                                Tok::ClosedPar => {
                                    set.insert(String::new());
                                    break;
                                }
                                Tok::Comma => {
                                    set.insert(String::new());
                                }
                                _ => {}
                            }
                        }
                        t => {
                            return Err(SelectorError(format!(
                                "found '{}', expected: ',', or identifier",
                                t.literal()
                            )))
                        }
                    }
                }
                let t = self.next().as_value();
                if t != Tok::ClosedPar {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ')'",
                        t.literal()
                    )));
                }
            }
            Tok::ClosedPar => {
                self.next();
                set.insert(String::new());
            }
            t => {
                return Err(SelectorError(format!(
                    "found '{}', expected: ',', ')' or identifier",
                    t.literal()
                )))
            }
        }
        Ok(set.into_iter().collect())
    }

    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        if matches!(self.peek().as_value(), Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.next().as_value() {
            Tok::Ident(v) => Ok(vec![v]),
            t => Err(SelectorError(format!(
                "found '{}', expected: identifier",
                t.literal()
            ))),
        }
    }
}
