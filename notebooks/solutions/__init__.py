"""Reference solutions of the lectures' exercises, one module per lecture, each with WRONG answers its checks must refuse."""
