import NodeCLI

await P2PNode.execute()
