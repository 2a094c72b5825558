// Allowlist entries and name matching (Sources/ClawjailParsers/Allowlist.swift).
//
// The input is lines: every line but the last is an allow entry, the last is a
// destination name as a client would send it (request target, Host, SNI, DNS query).
//
// Properties:
// - no crash for any entry or name;
// - normalisation is idempotent: an accepted entry's stored form parses to itself,
//   and Hostname.normalise of a normalised name is that name;
// - an accepted entry can match: the name it generates (the name itself, or x.<domain>
//   for a wildcard), in any case and with a trailing dot, is allowed on the entry's
//   port, and a wildcard never allows its own domain;
// - a decision agrees with a plain scan of the rules (the list's hashed lookup is an
//   optimisation only), is never `allowed` for an IP literal, and names a rule that
//   matches the screened name and allows the port.

import ClawjailParsers

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzInput(data, size), as: UTF8.self)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let host = lines.count > 1 ? lines.removeLast() : (lines.first ?? "")
    var rules: [AllowRule] = []
    for entry in lines.prefix(16) {
        if let rule = checkEntry(entry) { rules.append(rule) }
    }
    checkDecisions(Allowlist(rules: rules), host: host)
    checkNormalise(host)
    return 0
}

/// The entry's rule, if accepted, after checking the entry properties.
func checkEntry(_ entry: String) -> AllowRule? {
    switch AllowRule.parse(entry) {
    case .failure(let error):
        require(error.entry == entry, "the error names another entry")
        require(!error.message.isEmpty, "a refusal without a reason")
        return nil
    case .success(let rule):
        guard case .success(let again) = AllowRule.parse(rule.description) else {
            propertyFailed("\(entry.debugDescription) is stored as \(rule.description.debugDescription), which is refused")
        }
        require(again == rule, "\(rule) re-parses as \(again)")

        let port = rule.port ?? 443
        let list = Allowlist(rules: [rule])
        let witness: String
        switch rule.pattern {
        case .exact(let name): witness = name
        case .subdomains(of: let domain):
            witness = "x." + domain
            require(!list.decide(host: domain, port: port).isAllowed, "\(rule) allows its own domain")
        }
        for spelling in [witness, witness.uppercased(), witness + "."] {
            let decision = list.decide(host: spelling, port: port)
            require(decision == .allowed(rule), "\(entry.debugDescription) is accepted but does not allow "
                    + "\(spelling.debugDescription) (\(spelling.utf8.count) characters) on port \(port): \(decision)")
        }
        if rule.port == nil {
            require(!list.decide(host: witness, port: 22).isAllowed, "\(rule) without a port allows port 22")
        }
        return rule
    }
}

func checkDecisions(_ list: Allowlist, host: String) {
    let screened = Allowlist.screen(host)
    var ports: Set<UInt16> = [80, 443, 22]
    for rule in list.rules { if let p = rule.port { ports.insert(p) } }
    for port in ports.sorted() {
        let decision = list.decide(host: host, port: port)
        switch screened {
        case .failure(let rule):
            require(decision == .denied(rule), "screen refused \(host.debugDescription) as \(rule), decide said \(decision)")
        case .success(let name):
            let expected = list.rules.contains { $0.pattern.matches(name) && $0.allows(port: port) }
            switch decision {
            case .allowed(let rule):
                require(expected, "allowed \(host.debugDescription) by \(rule), which a scan does not find")
                require(rule.pattern.matches(name) && rule.allows(port: port), "\(rule) does not match \(name):\(port)")
                require(!IPAddress.looksLikeIPLiteral(host), "allowed an IP literal \(host.debugDescription)")
            case .denied(let rule):
                require(!expected, "denied \(host.debugDescription):\(port) as \(rule), but a rule matches")
                require(rule == .notAllowlisted, "a screened name denied as \(rule)")
            }
        }
    }
    let forName = list.ruleForName(host)
    if case .success(let name) = screened {
        require((forName != nil) == list.rules.contains { $0.pattern.matches(name) }, "ruleForName disagrees with a scan")
    } else {
        require(forName == nil, "ruleForName answers for a refused name")
    }
}

func checkNormalise(_ host: String) {
    guard case .success(let name) = Hostname.normalise(host) else { return }
    require(Hostname.normalise(name) == .success(name), "normalise is not idempotent on \(name.debugDescription)")
    require(Hostname.normalise(name + ".") == .success(name), "a trailing dot changes \(name.debugDescription)")
    require(name.utf8.count <= 253 && !name.isEmpty, "normalised to an impossible length")
    if case .success(let screened) = Allowlist.screen(host) {
        require(screened == name, "screen and normalise disagree")
        require(Allowlist.screen(name) == .success(name), "screen is not idempotent on \(name.debugDescription)")
    }
}
