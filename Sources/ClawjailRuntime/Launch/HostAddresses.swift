import ClawjailCore
import ClawjailSystem

/// The host's own addresses: the proxy refuses to dial them even when public, so a
/// name that resolves to this machine cannot reach a host service bound to 0.0.0.0.
enum HostAddresses {
    static func current() -> Set<IPAddress> {
        Set(Sockets.interfaceAddresses())
    }
}
