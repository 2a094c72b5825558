import Testing
@testable import ClawjailCore

@Suite("/proc/net/tcp parsing")
struct ProcNetTCPTests {
    static let v4 = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 00000000:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0
           1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 100 0 0 10 0
           2: 0101A8C0:1F90 0201A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 1004 1 0 100 0 0 10 0
           3: 0100007G:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1005 1 0 100 0 0 10 0
           4: 0100007F:0BB8 00000000:0000 0A
        """

    @Test("LISTEN lines only, addresses in network byte order; malformed and short lines skipped")
    func v4Table() {
        let l = ProcNetTCP.listeners(Self.v4, ipv6: false)
        #expect(l == [.init(address: [0, 0, 0, 0], port: 18789, inode: 1001), .init(address: [127, 0, 0, 1], port: 3000, inode: 1002)])
        #expect(ProcNetTCP.listeners(Self.v4, ipv6: true).isEmpty, "a tcp table read as tcp6 has addresses of the wrong length")
        #expect(ProcNetTCP.listeners("", ipv6: false).isEmpty)
    }

    @Test("tcp6: four 32-bit words, each in host byte order")
    func v6Table() {
        let v6 = """
              sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 00000000000000000000000001000000:4965 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0
               1: 0000000000000000FFFF00000100007F:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0
            """
        let l = ProcNetTCP.listeners(v6, ipv6: true)
        #expect(l.map(\.address) == [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]])
        #expect(l.map(\.port) == [18789, 3000] && l.map(\.inode) == [2002, 2003])
    }
}

@Suite("trimming")
struct TrimmingTests {
    @Test("only the given characters, only at the ends", arguments: [
        (" \t 512M \t", " \t", "512M"), ("a b", " ", "a b"), ("   ", " ", ""), ("", " ", ""),
        ("\n 6.1.0 \n", "\n ", "6.1.0"), ("x\r\n", " \n\r\t", "x"), ("x\r\n", " \r\t", "x\r\n"), ("\"v\",", " \"',", "v"),
    ] as [(String, String, String)])
    func trims(_ text: String, _ characters: String, _ expected: String) {
        #expect(text.trimming(characters) == expected)
        #expect(Substring(text).trimming(characters) == expected)
    }
}
