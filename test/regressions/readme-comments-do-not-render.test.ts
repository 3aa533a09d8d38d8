import { test } from 'tap'
import { readFileSync } from 'node:fs'
import { unbalancedComments } from '../consumer/readme.ts'

/*
 * Defect: an authoring note in README.md had lost its `<!--`, so its text rendered, its first
 * line as a heading above "Testing your app". Every HTML comment of the README (the notes and
 * the consumer suite's readme-test markers) must open and close outside code blocks.
 */

test('README.md: every HTML comment is opened and closed, so none renders', async t => {
  t.same(unbalancedComments(readFileSync(new URL('../../README.md', import.meta.url), 'utf8')), [])
})

test('what the check finds', async t => {
  t.same(unbalancedComments('## A heading" in README.md (the note\ngoes on.\n-->\n\n## Testing'), ['line 3: `-->` closes no comment: the text before it renders'], 'a comment that lost its opening')
  t.same(unbalancedComments('<!-- a note\n\n## Testing\n'), ['line 1: `<!--` is never closed'], 'one never closed hides the rest')
  t.same(unbalancedComments('<!-- a\n<!-- b -->\n'), ['line 2: `<!--` inside the comment opened on line 1'])
  t.same(unbalancedComments('<!-- readme-test: skip browser only -->\n```js\nconst html = \'<!-- -->\' // -->\n```\n<!--\nnote\n-->\n'), [], 'code blocks are not prose')
})
