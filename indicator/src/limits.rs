//! The product's documented size limits for indicators, batches and messages.

/// Size limits. The defaults are the documented limits of the product. String lengths are in
/// bytes of UTF-8, as stored and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Indicators per publish batch: 1000. A batch is stored in one transaction, so this bounds
    /// the transaction and the size of the error list a rejected batch returns; clients split
    /// larger files (the CLI publishes in chunks of this size).
    pub max_batch: usize,
    /// Short strings (identifiers, names, countries, authorities, recipients): 256 bytes. Real
    /// values stay under 100 (an IMO name is at most 50 characters, an EUC number far less);
    /// the bound keeps index keys and log lines small.
    pub max_short_string: usize,
    /// The narrative: 16 KiB, a few pages of text. A full report belongs in the originating
    /// case system; the indicator carries what a recipient needs to act.
    pub max_narrative_bytes: usize,
    /// The source description: 4 KiB. It is the first thing policies redact and should say how
    /// the information was obtained, not retell it.
    pub max_source_description_bytes: usize,
    /// Tags per indicator: 64, as STIX labels are used in practice.
    pub max_tags: usize,
    /// One tag: 64 bytes, a keyword (`forged-euc`), not a sentence.
    pub max_tag_bytes: usize,
    /// Items of every other list (`releasableTo`, `hsCodes`, consignment `route`, route `ports`,
    /// `transitCountries`): 64 each. A real route has a dozen ports, a consignment a few HS
    /// codes; 64 named recipients is already more than a TLP:RED distribution should have.
    pub max_list_items: usize,
    /// One encoded gRPC message: 4 MiB, tonic's default decoding limit, so clients with default
    /// settings interoperate. A batch of 1000 typical indicators (about 1 KiB each) fits; a batch
    /// of maximal ones does not, and is refused by the transport before validation.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 1000,
            max_short_string: 256,
            max_narrative_bytes: 16 * 1024,
            max_source_description_bytes: 4 * 1024,
            max_tags: 64,
            max_tag_bytes: 64,
            max_list_items: 64,
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}
