// Core's API is made of the parsers' types (a config error has a SourceLocation, an
// egress allowlist is an Allowlist of AllowRules, a manifest is a JSONValue), so a
// module that imports Core gets them too, as it did before they moved to their own
// target for fuzzing.
@_exported import ClawjailParsers
