package dev.edgevit.demo.core

/** A small JSON reader/writer, so the app's core needs no library beyond the Kotlin standard library. */
object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        val value = reader.value()
        reader.skipWhitespace()
        require(reader.done()) { "trailing characters after JSON value at ${reader.pos}" }
        return value
    }

    fun write(value: Any?): String = StringBuilder().also { writeTo(it, value) }.toString()

    private fun writeTo(out: StringBuilder, value: Any?) {
        when (value) {
            null -> out.append("null")

            is String -> writeString(out, value)

            is Boolean -> out.append(value)

            is Int, is Long -> out.append(value)

            is Float -> out.append(if (value.isFinite()) value.toString() else "null")

            is Double -> out.append(if (value.isFinite()) value.toString() else "null")

            is Map<*, *> -> {
                out.append('{')
                value.entries.forEachIndexed { i, (k, v) ->
                    if (i > 0) out.append(',')
                    writeString(out, k.toString())
                    out.append(':')
                    writeTo(out, v)
                }
                out.append('}')
            }

            is List<*> -> {
                out.append('[')
                value.forEachIndexed { i, v ->
                    if (i > 0) out.append(',')
                    writeTo(out, v)
                }
                out.append(']')
            }

            is DoubleArray -> writeTo(out, value.toList())

            else -> throw IllegalArgumentException("cannot write ${value::class} as JSON")
        }
    }

    private fun writeString(out: StringBuilder, s: String) {
        out.append('"')
        for (c in s) {
            when (c) {
                '"' -> out.append("\\\"")
                '\\' -> out.append("\\\\")
                '\n' -> out.append("\\n")
                '\r' -> out.append("\\r")
                '\t' -> out.append("\\t")
                else -> if (c < ' ') out.append("\\u%04x".format(c.code)) else out.append(c)
            }
        }
        out.append('"')
    }

    private class Reader(val s: String) {
        var pos = 0

        fun done() = pos >= s.length

        fun skipWhitespace() {
            while (pos < s.length && s[pos].isWhitespace()) pos++
        }

        fun value(): Any? {
            skipWhitespace()
            require(pos < s.length) { "unexpected end of JSON" }
            return when (val c = s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c.isDigit()) num() else throw IllegalArgumentException("bad JSON at $pos: $c")
            }
        }

        private fun literal(word: String, v: Any?): Any? {
            require(s.startsWith(word, pos)) { "bad JSON literal at $pos" }
            pos += word.length
            return v
        }

        private fun num(): Number {
            val start = pos
            while (pos < s.length && (s[pos].isDigit() || s[pos] in "+-.eE")) pos++
            val t = s.substring(start, pos)
            return if (t.any { it in ".eE" }) t.toDouble() else t.toLong()
        }

        private fun str(): String {
            pos++
            val out = StringBuilder()
            while (true) {
                require(pos < s.length) { "unterminated JSON string" }
                val c = s[pos++]
                when (c) {
                    '"' -> return out.toString()

                    '\\' -> {
                        when (val e = s[pos++]) {
                            'n' -> out.append('\n')

                            't' -> out.append('\t')

                            'r' -> out.append('\r')

                            'b' -> out.append('\b')

                            'f' -> out.append('\u000c')

                            'u' -> {
                                out.append(s.substring(pos, pos + 4).toInt(16).toChar())
                                pos += 4
                            }

                            else -> out.append(e)
                        }
                    }

                    else -> out.append(c)
                }
            }
        }

        private fun arr(): List<Any?> {
            pos++
            val out = mutableListOf<Any?>()
            skipWhitespace()
            if (s[pos] == ']') {
                pos++
                return out
            }
            while (true) {
                out.add(value())
                skipWhitespace()
                when (s[pos++]) {
                    ',' -> continue
                    ']' -> return out
                    else -> throw IllegalArgumentException("expected , or ] at ${pos - 1}")
                }
            }
        }

        private fun obj(): Map<String, Any?> {
            pos++
            val out = LinkedHashMap<String, Any?>()
            skipWhitespace()
            if (s[pos] == '}') {
                pos++
                return out
            }
            while (true) {
                skipWhitespace()
                val key = str()
                skipWhitespace()
                require(s[pos++] == ':') { "expected : at ${pos - 1}" }
                out[key] = value()
                skipWhitespace()
                when (s[pos++]) {
                    ',' -> continue
                    '}' -> return out
                    else -> throw IllegalArgumentException("expected , or } at ${pos - 1}")
                }
            }
        }
    }
}
