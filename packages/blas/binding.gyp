{
  "targets": [
    {
      "target_name": "para_blas",
      "sources": ["native/para_blas.c", "native/para_fused.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O3", "-std=c11", "-fno-trapping-math", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags!": ["-O2"],
      "conditions": [
        ["OS=='linux'", {
          "libraries": ["-lopenblas", "-lm"],
          "ldflags": ["-Wl,--as-needed"]
        }],
        ["OS=='mac'", {
          "include_dirs": ["/opt/homebrew/opt/openblas/include", "/usr/local/opt/openblas/include"],
          "libraries": ["-L/opt/homebrew/opt/openblas/lib", "-L/usr/local/opt/openblas/lib", "-lopenblas"]
        }]
      ]
    }
  ]
}
