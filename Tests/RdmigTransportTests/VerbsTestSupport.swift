import CRDMA

/// An ibv_gid from 16 bytes.
func ibvGID(_ bytes: [UInt8]) -> ibv_gid {
    var gid = ibv_gid()
    withUnsafeMutableBytes(of: &gid) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    return gid
}

import RdmigSystem

enum SystemCallErrorFixture {
    static func make(call: String, errno: Int32, context: String? = nil) -> SystemCallError {
        SystemCallError(call: call, errno: errno, context: context)
    }
}
