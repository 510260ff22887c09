// unclosed: a 'one of:' without its 'end' (refused before the program runs)
import { done } from "./probe.mjs";
done();
/* expect
one of:
  C > S  F. 1:1(0) ack 1
or:
  C > S  R. 1:1(0) ack 1
*/
