// A module without the @forward entry point.

module {
  func.func @main() {
    return
  }
}
