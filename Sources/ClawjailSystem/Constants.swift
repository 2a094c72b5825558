#if canImport(Glibc)
import Glibc
#endif

// GNU/Linux constants that Swift's Glibc module does not import (they sit behind
// _GNU_SOURCE). Values from the kernel's uapi headers, x86_64 and generic.
public let O_PATH: Int32 = 0o10000000
public let AT_EMPTY_PATH: Int32 = 0x1000
public let AT_RECURSIVE: Int32 = 0x8000
