/// A raw pointer handed to a thread that writes a disjoint part of the memory it points to;
/// the owner keeps the allocation alive until the thread is joined.
struct UnsafeSendablePointer<Pointee>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Pointee>
}
