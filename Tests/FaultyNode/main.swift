// `p2pnode-faulty`: the node with a test misbehaviour switched on, for the end-to-end
// tests that need a Byzantine validator (CometBFT's e2e "misbehaviors" work the same way).
// The shipped `p2pnode` has no switch for these; this binary is never installed.
//   SIDENODE_TEST_CHECKPOINT_FAULT=wrong-state-id|withhold-broadcast p2pnode-faulty [p2pnode arguments]
import Foundation
import Node
import NodeCLI

if let name = ProcessInfo.processInfo.environment["SIDENODE_TEST_CHECKPOINT_FAULT"] {
    guard let fault = CheckpointFault(rawValue: name) else {
        let known = CheckpointFault.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("unknown SIDENODE_TEST_CHECKPOINT_FAULT \(name) (known: \(known))\n".utf8))
        exit(2)
    }
    TestFaults.checkpoint = fault
}
await P2PNode.execute()
