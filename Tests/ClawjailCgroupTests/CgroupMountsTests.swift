import ClawjailCgroup
import Testing

@Suite("cgroup hierarchies from mountinfo")
struct CgroupMountsTests {
    @Test("hybrid host: v1 controllers by mount point, cgroup2 at unified; optional fields and escapes")
    func hybrid() {
        let text = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:12 master:3 - cgroup cgroup rw,memory
        39 31 0:36 / /sys/fs/cgroup/my\\040pids rw,relatime - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        42 31 0:39 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
        43 31 0:40 / /other/memory rw - cgroup cgroup rw,memory
        broken line without a separator
        44 31 0:41 / /x rw - cgroup
        """
        let m = CgroupMounts.read(text)
        #expect(m.unified == "/sys/fs/cgroup/unified")
        #expect(m.v1["cpu"] == "/sys/fs/cgroup/cpu,cpuacct")
        #expect(m.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct")
        // The first mount of a controller wins.
        #expect(m.v1["memory"] == "/sys/fs/cgroup/memory")
        #expect(m.v1["pids"] == "/sys/fs/cgroup/my pids")
        #expect(m.v1["freezer"] == "/sys/fs/cgroup/freezer")
        #expect(m.v1["systemd"] == nil)
        #expect(m.v1.count == 5)
    }

    @Test("pure v2 host: no v1 controllers")
    func pureV2() {
        let m = CgroupMounts.read("29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")
        #expect(m.unified == "/sys/fs/cgroup")
        #expect(m.v1.isEmpty)
        #expect(CgroupMounts.read("").unified == nil)
    }
}
