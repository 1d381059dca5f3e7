"""The page's panels, one module each: settings (the left column), Generate, Sweep, Distributions, Share.

Each module has a `build_*` function that lays out its widgets (inside the page's `with gr.Blocks()`) and returns
them as a small dataclass, and a `wire_*` function that attaches its handlers once every panel exists. Handlers
receive the page's settings by name (`Form`: the widgets a PlaygroundConfig is read from), never as a list
sliced by position.
"""
