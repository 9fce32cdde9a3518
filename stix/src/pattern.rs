//! STIX patterns over the SALW observables: written for every exported indicator, read back on
//! import.
//!
//! Cordon writes one observation expression whose comparisons are joined by `AND`, each an
//! equality on one property of one SALW observable type (`salw-vessel:imo = '9319466'`), list
//! items by index (`salw-consignment:route[0] = 'MTMAR'`). It reads that subset of the STIX
//! patterning grammar and names anything else it meets (`OR`, other operators, qualifiers,
//! several observations): such a pattern describes something other than one indicator's
//! identifiers, and is reported rather than guessed at.

use std::fmt::Write as _;

/// A literal on the right of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Int(i64),
}

/// `object_type:property[index] = value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comparison {
    pub object_type: String,
    pub property: String,
    /// `Some(n)` for `property[n]`.
    pub index: Option<usize>,
    pub value: Literal,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("pattern: {0}")]
    Syntax(String),
    #[error(
        "pattern: {0} is not supported (Cordon reads one observation of `=` comparisons joined by AND)"
    )]
    Unsupported(String),
}

/// Writes `[a AND b AND ...]`. An empty list gives an empty string, which is not a pattern:
/// callers map only indicators that carry at least one observable property.
pub fn write(comparisons: &[Comparison]) -> String {
    let mut out = String::from("[");
    for (i, c) in comparisons.iter().enumerate() {
        if i > 0 {
            out.push_str(" AND ");
        }
        let _ = write!(out, "{}:{}", c.object_type, c.property);
        if let Some(index) = c.index {
            let _ = write!(out, "[{index}]");
        }
        out.push_str(" = ");
        match &c.value {
            Literal::Str(s) => {
                out.push('\'');
                for ch in s.chars() {
                    if ch == '\'' || ch == '\\' {
                        out.push('\\');
                    }
                    out.push(ch);
                }
                out.push('\'');
            }
            Literal::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Literal::Int(n) => {
                let _ = write!(out, "{n}");
            }
        }
    }
    out.push(']');
    out
}

/// Reads a pattern written in the subset [`write`] produces.
pub fn parse(pattern: &str) -> Result<Vec<Comparison>, PatternError> {
    let mut p = Parser {
        text: pattern,
        at: 0,
    };
    p.skip_space();
    p.expect('[')?;
    let mut comparisons = vec![p.comparison()?];
    loop {
        p.skip_space();
        if p.eat(']') {
            break;
        }
        match p.word().as_deref() {
            Some("AND") => comparisons.push(p.comparison()?),
            Some("OR") => return Err(PatternError::Unsupported("OR".into())),
            Some(other) => return Err(PatternError::Syntax(format!("unexpected `{other}`"))),
            None => return Err(p.unexpected("`AND` or `]`")),
        }
    }
    p.skip_space();
    if p.at < p.text.len() {
        let rest: String = p.text[p.at..].chars().take(24).collect();
        return Err(PatternError::Unsupported(format!(
            "`{rest}` after the first observation"
        )));
    }
    Ok(comparisons)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn skip_space(&mut self) {
        while let Some(ch) = self.peek().filter(|c| c.is_whitespace()) {
            self.at += ch.len_utf8();
        }
    }

    fn eat(&mut self, ch: char) -> bool {
        if self.peek() == Some(ch) {
            self.at += ch.len_utf8();
            true
        } else {
            false
        }
    }

    fn unexpected(&self, wanted: &str) -> PatternError {
        match self.peek() {
            Some(ch) => PatternError::Syntax(format!(
                "expected {wanted} at character {}, found `{ch}`",
                self.at
            )),
            None => PatternError::Syntax(format!("expected {wanted}, found the end")),
        }
    }

    fn expect(&mut self, ch: char) -> Result<(), PatternError> {
        self.skip_space();
        if self.eat(ch) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{ch}`")))
        }
    }

    /// A run of `[A-Za-z0-9_-]`.
    fn word(&mut self) -> Option<String> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.at += 1;
        }
        (self.at > start).then(|| self.text[start..self.at].to_string())
    }

    fn comparison(&mut self) -> Result<Comparison, PatternError> {
        self.skip_space();
        if self.peek() == Some('(') {
            return Err(PatternError::Unsupported(
                "a parenthesised expression".into(),
            ));
        }
        let object_type = self
            .word()
            .ok_or_else(|| self.unexpected("an object type"))?;
        if object_type == "NOT" {
            return Err(PatternError::Unsupported("NOT".into()));
        }
        if !self.eat(':') {
            return Err(self.unexpected("`:` after the object type"));
        }
        let property = self
            .word()
            .ok_or_else(|| self.unexpected("a property name"))?;
        if self.peek() == Some('.') {
            return Err(PatternError::Unsupported(format!(
                "the nested path `{object_type}:{property}.…`"
            )));
        }
        let index = if self.eat('[') {
            if self.eat('*') {
                return Err(PatternError::Unsupported("a `[*]` list path".into()));
            }
            let digits = self.word().ok_or_else(|| self.unexpected("a list index"))?;
            let index = digits
                .parse::<usize>()
                .map_err(|_| PatternError::Syntax(format!("`{digits}` is not a list index")))?;
            self.expect(']')?;
            Some(index)
        } else {
            None
        };
        self.skip_space();
        if !self.eat('=') {
            let op: String = self.text[self.at..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            return Err(if op.is_empty() {
                self.unexpected("`=`")
            } else {
                PatternError::Unsupported(format!("the operator `{op}`"))
            });
        }
        self.skip_space();
        let value = self.literal()?;
        Ok(Comparison {
            object_type,
            property,
            index,
            value,
        })
    }

    fn literal(&mut self) -> Result<Literal, PatternError> {
        if self.eat('\'') {
            let mut s = String::new();
            loop {
                let Some(ch) = self.peek() else {
                    return Err(PatternError::Syntax("unterminated string".into()));
                };
                self.at += ch.len_utf8();
                match ch {
                    '\'' => return Ok(Literal::Str(s)),
                    '\\' => match self.peek() {
                        Some(esc @ ('\'' | '\\')) => {
                            self.at += 1;
                            s.push(esc);
                        }
                        _ => {
                            return Err(PatternError::Syntax(
                                "a backslash may only escape `'` or `\\`".into(),
                            ));
                        }
                    },
                    _ => s.push(ch),
                }
            }
        }
        let word = self.word().ok_or_else(|| self.unexpected("a value"))?;
        match word.as_str() {
            "true" => Ok(Literal::Bool(true)),
            "false" => Ok(Literal::Bool(false)),
            _ => word.parse::<i64>().map(Literal::Int).map_err(|_| {
                PatternError::Unsupported(format!("the value `{word}` (strings are quoted)"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmp(t: &str, p: &str, index: Option<usize>, value: Literal) -> Comparison {
        Comparison {
            object_type: t.into(),
            property: p.into(),
            index,
            value,
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let comparisons = vec![
            cmp("salw-vessel", "imo", None, Literal::Str("9319466".into())),
            cmp(
                "salw-vessel",
                "name",
                None,
                Literal::Str("O'Brien \\ Sons".into()),
            ),
            cmp(
                "salw-vessel",
                "imo_check_digit_override",
                None,
                Literal::Bool(true),
            ),
            cmp(
                "salw-consignment",
                "route",
                Some(1),
                Literal::Str("MTMAR".into()),
            ),
        ];
        let text = write(&comparisons);
        assert_eq!(
            text,
            "[salw-vessel:imo = '9319466' AND salw-vessel:name = 'O\\'Brien \\\\ Sons' AND \
             salw-vessel:imo_check_digit_override = true AND salw-consignment:route[1] = 'MTMAR']"
        );
        assert_eq!(parse(&text).unwrap(), comparisons);
    }

    #[test]
    fn names_what_it_does_not_read() {
        let cases = [
            ("[salw-vessel:imo = '1' OR salw-vessel:imo = '2']", "OR"),
            ("[salw-vessel:imo != '1']", "`!=`"),
            ("[salw-vessel:name LIKE 'MV%']", "`LIKE`"),
            (
                "[salw-vessel:imo = '1'] AND [salw-vessel:imo = '2']",
                "after the first",
            ),
            (
                "[salw-vessel:imo = '1'] WITHIN 10 SECONDS",
                "after the first",
            ),
            ("[salw-consignment:route[*] = 'X']", "[*]"),
            ("[file:hashes.'SHA-256' = 'ab']", "nested path"),
            ("[salw-vessel:imo = h'00']", "value"),
        ];
        for (pattern, wanted) in cases {
            let err = parse(pattern).unwrap_err().to_string();
            assert!(err.contains(wanted), "{pattern}: {err}");
        }
        for bad in [
            "",
            "salw-vessel:imo = '1'",
            "[salw-vessel:imo = '1'",
            "[:imo = '1']",
        ] {
            assert!(matches!(parse(bad), Err(PatternError::Syntax(_))), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_string_value_survives(value in ".*", index in proptest::option::of(0usize..40)) {
            let c = vec![cmp("salw-party", "name", index, Literal::Str(value))];
            prop_assert_eq!(parse(&write(&c)).unwrap(), c);
        }

        #[test]
        fn never_panics(text in ".*") {
            let _ = parse(&text);
        }
    }
}
