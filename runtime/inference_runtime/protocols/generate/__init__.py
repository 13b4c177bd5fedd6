"""Our /generate protocol: prompt + system_info + parallel history lists."""
