import Testing
@testable import ClawjailCore

/// String.replacingAll fills the jail's /etc templates (the planner's /etc step).
@Suite("String.replacingAll") struct ReplacingAllTests {
    @Test func replacesEveryOccurrenceLeftToRight() {
        #expect("tool:x:@UID@:@GID@:@HOME@".replacingAll("@UID@", with: "1000") == "tool:x:1000:@GID@:@HOME@")
        #expect("@A@@A@".replacingAll("@A@", with: "x") == "xx")
        #expect("aaa".replacingAll("aa", with: "b") == "ba")
        #expect("abc".replacingAll("abc", with: "") == "")
        #expect("ab".replacingAll("abc", with: "x") == "ab")
    }

    @Test func noMatchAndEmptyTargetLeaveTheTextAlone() {
        #expect("hosts".replacingAll("@HOSTNAME@", with: "j") == "hosts")
        #expect("hosts".replacingAll("", with: "j") == "hosts")
        #expect("".replacingAll("a", with: "b") == "")
    }

    @Test func multibyteTextAndReplacements() {
        #expect("héllo é".replacingAll("é", with: "e") == "hello e")
        #expect("名前: @USER@".replacingAll("@USER@", with: "エージェント") == "名前: エージェント")
        // A byte sequence inside another character never matches: "é" is C3 A9, "©" is C2 A9.
        #expect("©".replacingAll("\u{A9}", with: "x") == "x")
        #expect("é".replacingAll("\u{A9}", with: "x") == "é")
    }
}
